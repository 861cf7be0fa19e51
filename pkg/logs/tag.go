package logs

import (
	"fmt"
	"regexp"
	"strings"
)

// tagFields are the placeholders a tag template may use.
var tagFields = map[string]bool{"namespace": true, "pod": true, "pod_id": true, "container": true, "container_id": true, "node": true}

var placeholder = regexp.MustCompile(`\$\{([^}]*)\}`)

// TagTemplate makes each container's tag from a template with ${namespace}, ${pod}, ${pod_id},
// ${container}, ${container_id} (without its runtime prefix) and ${node}.
type TagTemplate struct {
	// parts are the template cut at its placeholders once, for Execute, which runs for every chunk.
	parts []tagPart
}

// tagPart is a piece of a template: literal text, or the name of a field when field is set.
type tagPart struct {
	text  string
	field bool
}

// ParseTagTemplate checks a template's placeholders.
func ParseTagTemplate(template string) (*TagTemplate, error) {
	if template == "" {
		return nil, fmt.Errorf("empty tag template")
	}
	t := &TagTemplate{}
	last := 0
	for _, m := range placeholder.FindAllStringSubmatchIndex(template, -1) {
		name := template[m[2]:m[3]]
		if !tagFields[name] {
			return nil, fmt.Errorf("unknown placeholder %s in tag template %q (known: ${namespace}, ${pod}, ${pod_id}, ${container}, ${container_id}, ${node})", template[m[0]:m[1]], template)
		}
		t.parts = append(t.parts, tagPart{text: template[last:m[0]]}, tagPart{text: name, field: true})
		last = m[1]
	}
	t.parts = append(t.parts, tagPart{text: template[last:]})
	return t, nil
}

// Execute returns the tag of a container's records.
func (t *TagTemplate) Execute(l ContainerLog, containerID, node string) string {
	var b strings.Builder
	for _, p := range t.parts {
		if !p.field {
			b.WriteString(p.text)
			continue
		}
		switch p.text {
		case "namespace":
			b.WriteString(l.Namespace)
		case "pod":
			b.WriteString(l.Pod)
		case "pod_id":
			b.WriteString(l.UID)
		case "container":
			b.WriteString(l.Container)
		case "container_id":
			b.WriteString(containerID)
		case "node":
			b.WriteString(node)
		}
	}
	return b.String()
}
