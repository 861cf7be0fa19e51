package logs

import (
	"fmt"
	"regexp"
	"strings"
)

// tagValues are what a tag's placeholders stand for: a container's log, its ID and the node's name.
type tagValues struct {
	log               ContainerLog
	containerID, node string
}

// tagFields are the placeholders a tag template may use, and the value each stands for.
var tagFields = map[string]func(v tagValues) string{
	"namespace":    func(v tagValues) string { return v.log.Namespace },
	"pod":          func(v tagValues) string { return v.log.Pod },
	"pod_id":       func(v tagValues) string { return v.log.UID },
	"container":    func(v tagValues) string { return v.log.Container },
	"container_id": func(v tagValues) string { return v.containerID },
	"node":         func(v tagValues) string { return v.node },
}

var placeholder = regexp.MustCompile(`\$\{([^}]*)\}`)

// TagTemplate makes each container's tag from a template with ${namespace}, ${pod}, ${pod_id},
// ${container}, ${container_id} (without its runtime prefix) and ${node}.
type TagTemplate struct {
	// parts are the template cut at its placeholders once, for Execute, which runs for every chunk.
	parts []tagPart
}

// tagPart is a piece of a template: literal text, or a placeholder's value when value is set.
type tagPart struct {
	text  string
	value func(v tagValues) string
}

// ParseTagTemplate checks a template's placeholders.
func ParseTagTemplate(template string) (*TagTemplate, error) {
	if template == "" {
		return nil, fmt.Errorf("empty tag template")
	}
	t := &TagTemplate{}
	last := 0
	for _, m := range placeholder.FindAllStringSubmatchIndex(template, -1) {
		value, known := tagFields[template[m[2]:m[3]]]
		if !known {
			return nil, fmt.Errorf("unknown placeholder %s in tag template %q (known: ${namespace}, ${pod}, ${pod_id}, ${container}, ${container_id}, ${node})", template[m[0]:m[1]], template)
		}
		t.parts = append(t.parts, tagPart{text: template[last:m[0]]}, tagPart{value: value})
		last = m[1]
	}
	t.parts = append(t.parts, tagPart{text: template[last:]})
	return t, nil
}

// Execute returns the tag of a container's records.
func (t *TagTemplate) Execute(l ContainerLog, containerID, node string) string {
	v := tagValues{log: l, containerID: containerID, node: node}
	var b strings.Builder
	for _, p := range t.parts {
		if p.value != nil {
			b.WriteString(p.value(v))
		} else {
			b.WriteString(p.text)
		}
	}
	return b.String()
}
