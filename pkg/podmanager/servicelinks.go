package podmanager

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
)

// serviceEnv returns the Docker-link style variables of the Services a pod sees, as the kubelet makes them:
// those of its own namespace when enableServiceLinks (default true), and always the API server's
// `kubernetes` Service from the default namespace, which a same-named Service of the pod's namespace hides.
func serviceEnv(services corelisters.ServiceLister, pod *corev1.Pod) ([]corev1.EnvVar, error) {
	if services == nil {
		return nil, nil
	}
	links := pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks
	chosen := map[string]*corev1.Service{}
	var names []string
	add := func(svc *corev1.Service) {
		if _, seen := chosen[svc.Name]; !seen {
			names = append(names, svc.Name)
		}
		chosen[svc.Name] = svc
	}
	if links {
		own, err := services.Services(pod.Namespace).List(labels.Everything())
		if err != nil {
			return nil, fmt.Errorf("listing services of namespace %s: %w", pod.Namespace, err)
		}
		for _, svc := range own {
			add(svc)
		}
	}
	if _, hidden := chosen["kubernetes"]; !hidden {
		if api, err := services.Services(metav1.NamespaceDefault).Get("kubernetes"); err == nil {
			add(api)
		}
	}
	var env []corev1.EnvVar
	for _, name := range names {
		env = append(env, serviceVariables(chosen[name])...)
	}
	return env, nil
}

// serviceVariables are one Service's variables: FOO_SERVICE_HOST/_PORT(_<name>) and the Docker link set
// FOO_PORT, FOO_PORT_<port>_<PROTO>(_PROTO/_PORT/_ADDR). Headless Services and those without ports have none.
func serviceVariables(svc *corev1.Service) []corev1.EnvVar {
	ip := svc.Spec.ClusterIP
	if ip == "" || ip == corev1.ClusterIPNone || len(svc.Spec.Ports) == 0 {
		return nil
	}
	prefix := envVarName(svc.Name)
	env := []corev1.EnvVar{
		{Name: prefix + "_SERVICE_HOST", Value: ip},
		{Name: prefix + "_SERVICE_PORT", Value: strconv.Itoa(int(svc.Spec.Ports[0].Port))},
	}
	for _, p := range svc.Spec.Ports {
		if p.Name != "" {
			env = append(env, corev1.EnvVar{Name: prefix + "_SERVICE_PORT_" + envVarName(p.Name), Value: strconv.Itoa(int(p.Port))})
		}
	}
	for i, p := range svc.Spec.Ports {
		proto := strings.ToLower(string(p.Protocol))
		if proto == "" {
			proto = "tcp"
		}
		port := strconv.Itoa(int(p.Port))
		url := proto + "://" + net.JoinHostPort(ip, port)
		if i == 0 {
			env = append(env, corev1.EnvVar{Name: prefix + "_PORT", Value: url})
		}
		portPrefix := prefix + "_PORT_" + port + "_" + strings.ToUpper(proto)
		env = append(env,
			corev1.EnvVar{Name: portPrefix, Value: url},
			corev1.EnvVar{Name: portPrefix + "_PROTO", Value: proto},
			corev1.EnvVar{Name: portPrefix + "_PORT", Value: port},
			corev1.EnvVar{Name: portPrefix + "_ADDR", Value: ip})
	}
	return env
}

func envVarName(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }
