package podmanager

import (
	"context"
	"fmt"
	"maps"
	"os"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// serviceAccountToken is a bound token the worker holds for a projected volume path.
type serviceAccountToken struct {
	token    string
	issuedAt time.Time
	expires  time.Time
}

// projectedFiles builds a projected volume: ServiceAccount tokens (TokenRequest bound to the pod, renewed
// after 80% of their life, as the kubelet does), ConfigMap and Secret keys, and downward API fields.
func (w *worker) projectedFiles(ctx context.Context, pod *corev1.Pod, volume string, p *corev1.ProjectedVolumeSource) (map[string]projectedFile, error) {
	mode := fileMode(p.DefaultMode)
	files := map[string]projectedFile{}
	for _, src := range p.Sources {
		var part map[string]projectedFile
		var err error
		switch {
		case src.ServiceAccountToken != nil:
			var token string
			token, err = w.serviceAccountToken(ctx, pod, volume, src.ServiceAccountToken)
			part = map[string]projectedFile{src.ServiceAccountToken.Path: {data: []byte(token), mode: mode}}
		case src.ConfigMap != nil:
			var data map[string][]byte
			if data, err = w.readConfigMap(ctx, pod.Namespace, src.ConfigMap.Name, isTrue(src.ConfigMap.Optional)); err == nil {
				part, err = keyFiles(data, src.ConfigMap.Items, mode, isTrue(src.ConfigMap.Optional))
			}
		case src.Secret != nil:
			var data map[string][]byte
			if data, err = w.readSecret(ctx, pod.Namespace, src.Secret.Name, isTrue(src.Secret.Optional)); err == nil {
				part, err = keyFiles(data, src.Secret.Items, mode, isTrue(src.Secret.Optional))
			}
		case src.DownwardAPI != nil:
			part, err = downwardAPIFiles(pod, src.DownwardAPI.Items, mode, w.m.allocatable())
		default:
			err = fmt.Errorf("projected source is not supported yet (clusterTrustBundle, podCertificate)")
		}
		if err != nil {
			return nil, err
		}
		maps.Copy(files, part)
	}
	return files, nil
}

// tokenRetry and maxTokenRetry space the TokenRequests of a Pod the API server does not find yet: 50 ms
// doubling, 750 ms in all.
const (
	tokenRetry    = 50 * time.Millisecond
	maxTokenRetry = 400 * time.Millisecond
)

func (w *worker) serviceAccountToken(ctx context.Context, pod *corev1.Pod, volume string, src *corev1.ServiceAccountTokenProjection) (string, error) {
	key := volume + "/" + src.Path
	if t, ok := w.tokens[key]; ok && time.Now().Before(t.issuedAt.Add(t.expires.Sub(t.issuedAt)*8/10)) {
		return t.token, nil
	}
	expiration := int64(3600)
	if src.ExpirationSeconds != nil {
		expiration = *src.ExpirationSeconds
	}
	var audiences []string
	if src.Audience != "" {
		audiences = []string{src.Audience}
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	if w.m.client == nil {
		return "", fmt.Errorf("service account token for %s: standalone mode has no API server to issue one", sa)
	}
	request := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences:         audiences,
		ExpirationSeconds: &expiration,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	create := func() (*authenticationv1.TokenRequest, error) {
		return w.m.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, request, metav1.CreateOptions{})
	}
	tr, err := create()
	// The API server's Node authorizer and NodeRestriction admission look the bound Pod up in a graph and an
	// informer of their own, which a busy server fills a moment after the Pod's creation: a third of a
	// 110-pod burst was refused at first, "pod not found" (NotFound) or "no relationship found between
	// node and this object" (Forbidden). A short wait here costs less than a failed sync (a Pending status,
	// a FailedMount Event, the pod back at the end of the sandbox queue).
	for wait := tokenRetry; (apierrors.IsNotFound(err) || apierrors.IsForbidden(err)) && wait <= maxTokenRetry; wait *= 2 {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(wait):
		}
		tr, err = create()
	}
	if err != nil {
		return "", fmt.Errorf("requesting a token for service account %s/%s: %w", pod.Namespace, sa, err)
	}
	w.tokens[key] = serviceAccountToken{token: tr.Status.Token, issuedAt: time.Now(), expires: tr.Status.ExpirationTimestamp.Time}
	return tr.Status.Token, nil
}

// downwardAPIFiles renders the pod fields and container resources a downwardAPI volume asks for, in the
// kubelet's formats.
func downwardAPIFiles(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, mode os.FileMode,
	allocatable corev1.ResourceList) (map[string]projectedFile, error) {
	files := map[string]projectedFile{}
	for _, it := range items {
		if ref := it.ResourceFieldRef; ref != nil {
			value, err := resourceFieldValue(pod, nil, ref, allocatable)
			if err != nil {
				return nil, fmt.Errorf("downwardAPI %s: %w", it.Path, err)
			}
			files[it.Path] = projectedFile{data: []byte(value), mode: itemMode(it.Mode, mode)}
			continue
		}
		if it.FieldRef == nil {
			return nil, fmt.Errorf("downwardAPI %s: neither fieldRef nor resourceFieldRef", it.Path)
		}
		value, err := podFieldValue(pod, it.FieldRef.FieldPath, podAddresses{})
		if err != nil {
			return nil, fmt.Errorf("downwardAPI %s: %w", it.Path, err)
		}
		files[it.Path] = projectedFile{data: []byte(value), mode: itemMode(it.Mode, mode)}
	}
	return files, nil
}
