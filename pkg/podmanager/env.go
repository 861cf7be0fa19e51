package podmanager

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// environment is a container's resolved variables, in the order the kubelet passes them.
type environment struct {
	names  []string
	values map[string]string
}

func (e *environment) set(name, value string) {
	if _, ok := e.values[name]; !ok {
		e.names = append(e.names, name)
	}
	e.values[name] = value
}

func (e *environment) keyValues() []*runtimeapi.KeyValue {
	out := make([]*runtimeapi.KeyValue, 0, len(e.names))
	for _, n := range e.names {
		out = append(out, &runtimeapi.KeyValue{Key: n, Value: []byte(e.values[n])})
	}
	return out
}

func (e *environment) expandAll(in []string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = expand(s, e.values)
	}
	return out
}

// environment resolves the service variables, then envFrom, then env (each overriding the one before), as the
// kubelet does: env values may refer to service variables and to variables defined before them as $(NAME).
// ConfigMaps and Secrets are read when a container is created,
// which the Node authorizer allows for objects the pod references. A missing non-optional source is an
// error that the pod shows as CreateContainerConfigError.
func (w *worker) environment(ctx context.Context, pod *corev1.Pod, c *corev1.Container, addrs podAddresses) (*environment, error) {
	env := &environment{values: map[string]string{}}
	services, err := serviceEnv(w.m.services, pod)
	if err != nil {
		return nil, err
	}
	for _, e := range services {
		env.set(e.Name, e.Value)
	}
	src := &envSources{objects: w.m.objects, pod: w.uid, namespace: pod.Namespace}
	for _, from := range c.EnvFrom {
		data, optional, err := src.envFrom(ctx, from)
		if err != nil {
			if optional && apierrors.IsNotFound(err) {
				continue
			}
			return nil, err
		}
		// Keys the API accepts for ConfigMaps and Secrets are valid variable names under the relaxed
		// env-var-name rules (GA since v1.34), so nothing needs skipping.
		for _, k := range slices.Sorted(maps.Keys(data)) {
			env.set(from.Prefix+k, data[k])
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env.set(e.Name, expand(e.Value, env.values))
			continue
		}
		if ref := e.ValueFrom.ResourceFieldRef; ref != nil {
			value, err := resourceFieldValue(pod, c, ref, w.m.allocatable())
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			env.set(e.Name, value)
			continue
		}
		value, skip, err := src.valueFrom(ctx, e, pod, addrs)
		if err != nil {
			return nil, err
		}
		if !skip {
			env.set(e.Name, value)
		}
	}
	return env, nil
}

// envSources reads the ConfigMaps and Secrets of a pod's environment from their watches, as the kubelet's
// ConfigMap and Secret managers serve both volumes and environment.
type envSources struct {
	objects   MountedObjects
	pod       types.UID
	namespace string
}

func (s *envSources) configMap(ctx context.Context, name string) (*corev1.ConfigMap, error) {
	return s.objects.ConfigMap(ctx, s.pod, s.namespace, name)
}

func (s *envSources) secret(ctx context.Context, name string) (*corev1.Secret, error) {
	return s.objects.Secret(ctx, s.pod, s.namespace, name)
}

// envFrom returns the key/values of one envFrom source and whether it is optional.
func (s *envSources) envFrom(ctx context.Context, from corev1.EnvFromSource) (map[string]string, bool, error) {
	switch {
	case from.ConfigMapRef != nil:
		optional := from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional
		cm, err := s.configMap(ctx, from.ConfigMapRef.Name)
		if err != nil {
			return nil, optional, fmt.Errorf("envFrom configmap %q: %w", from.ConfigMapRef.Name, err)
		}
		return cm.Data, optional, nil
	case from.SecretRef != nil:
		optional := from.SecretRef.Optional != nil && *from.SecretRef.Optional
		sec, err := s.secret(ctx, from.SecretRef.Name)
		if err != nil {
			return nil, optional, fmt.Errorf("envFrom secret %q: %w", from.SecretRef.Name, err)
		}
		data := make(map[string]string, len(sec.Data))
		for k, v := range sec.Data {
			data[k] = string(v)
		}
		return data, optional, nil
	}
	return nil, false, fmt.Errorf("envFrom entry has neither configMapRef nor secretRef")
}

// valueFrom resolves one env entry's valueFrom; skip is true for an optional reference that does not exist.
func (s *envSources) valueFrom(ctx context.Context, e corev1.EnvVar, pod *corev1.Pod, addrs podAddresses) (value string, skip bool, err error) {
	from := e.ValueFrom
	switch {
	case from.FieldRef != nil:
		v, err := podFieldValue(pod, from.FieldRef.FieldPath, addrs)
		if err != nil {
			return "", false, fmt.Errorf("env %s: %w", e.Name, err)
		}
		return v, false, nil
	case from.ConfigMapKeyRef != nil:
		ref := from.ConfigMapKeyRef
		optional := ref.Optional != nil && *ref.Optional
		cm, err := s.configMap(ctx, ref.Name)
		if err != nil {
			if optional && apierrors.IsNotFound(err) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("env %s: configmap %q: %w", e.Name, ref.Name, err)
		}
		v, ok := cm.Data[ref.Key]
		if !ok && !optional {
			return "", false, fmt.Errorf("env %s: couldn't find key %s in ConfigMap %s/%s", e.Name, ref.Key, s.namespace, ref.Name)
		}
		return v, !ok, nil
	case from.SecretKeyRef != nil:
		ref := from.SecretKeyRef
		optional := ref.Optional != nil && *ref.Optional
		sec, err := s.secret(ctx, ref.Name)
		if err != nil {
			if optional && apierrors.IsNotFound(err) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("env %s: secret %q: %w", e.Name, ref.Name, err)
		}
		v, ok := sec.Data[ref.Key]
		if !ok && !optional {
			return "", false, fmt.Errorf("env %s: couldn't find key %s in Secret %s/%s", e.Name, ref.Key, s.namespace, ref.Name)
		}
		return string(v), !ok, nil
	}
	return "", false, fmt.Errorf("env %s: valueFrom has no source", e.Name)
}

// expand replaces $(NAME) with its value when NAME is defined and turns $$ into $, leaving everything else
// as written: the kubelet's (and so Kubernetes') expansion rules for env values, command and args.
func expand(in string, vars map[string]string) string {
	return expandWith(in, func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	})
}

// expandWith is expand with the values looked up by a function; a name it does not know stays as written.
func expandWith(in string, lookup func(name string) (string, bool)) string {
	if !strings.Contains(in, "$") {
		return in
	}
	var b strings.Builder
	for i := 0; i < len(in); i++ {
		if in[i] != '$' || i+1 == len(in) {
			b.WriteByte(in[i])
			continue
		}
		switch next := in[i+1]; {
		case next == '$':
			b.WriteByte('$')
			i++
		case next == '(':
			end := strings.IndexByte(in[i+2:], ')')
			if end < 0 {
				b.WriteString(in[i:])
				return b.String()
			}
			name := in[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString(in[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}
