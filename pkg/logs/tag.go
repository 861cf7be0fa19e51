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
type TagTemplate struct{ template string }

// ParseTagTemplate checks a template's placeholders.
func ParseTagTemplate(template string) (*TagTemplate, error) {
	if template == "" {
		return nil, fmt.Errorf("empty tag template")
	}
	for _, m := range placeholder.FindAllStringSubmatch(template, -1) {
		if !tagFields[m[1]] {
			return nil, fmt.Errorf("unknown placeholder %s in tag template %q (known: ${namespace}, ${pod}, ${pod_id}, ${container}, ${container_id}, ${node})", m[0], template)
		}
	}
	return &TagTemplate{template: template}, nil
}

// Execute returns the tag of a container's records.
func (t *TagTemplate) Execute(l ContainerLog, containerID, node string) string {
	return strings.NewReplacer("${namespace}", l.Namespace, "${pod}", l.Pod, "${pod_id}", l.UID,
		"${container}", l.Container, "${container_id}", containerID, "${node}", node).Replace(t.template)
}
