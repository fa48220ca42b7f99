// Command validate decodes Kubernetes manifests strictly into the published
// API types (k8s.io/api, the Prometheus Operator's monitoring/v1): an unknown
// or misspelt field, a duplicate key, a wrong type or an unknown kind is an
// error. Run by tests/packaging/test_kubernetes.py:
//
//	go run . ../*.yaml
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomize's Kustomization this repository
// uses; any other field is an error, so a typo cannot pass.
type kustomization struct {
	metav1.TypeMeta `json:",inline"`
	Namespace       string   `json:"namespace,omitempty"`
	Resources       []string `json:"resources,omitempty"`
}

// object is what every kind below has: metadata to check names and labels.
type object interface {
	GetName() string
	GetNamespace() string
	GetLabels() map[string]string
}

var kinds = map[string]func() any{
	"v1/Namespace":                       func() any { return &corev1.Namespace{} },
	"v1/ServiceAccount":                  func() any { return &corev1.ServiceAccount{} },
	"v1/ConfigMap":                       func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                          func() any { return &corev1.Secret{} },
	"v1/Service":                         func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                 func() any { return &appsv1.Deployment{} },
	"batch/v1/Job":                       func() any { return &batchv1.Job{} },
	"policy/v1/PodDisruptionBudget":      func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy": func() any { return &networkingv1.NetworkPolicy{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any {
		return &monitoringv1.ServiceMonitor{}
	},
	"monitoring.coreos.com/v1/PodMonitor":           func() any { return &monitoringv1.PodMonitor{} },
	"kustomize.config.k8s.io/v1beta1/Kustomization": func() any { return &kustomization{} },
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: validate FILE.yaml...")
		os.Exit(2)
	}
	failed := false
	for _, path := range os.Args[1:] {
		if err := validateFile(path); err != nil {
			fmt.Printf("INVALID %s: %v\n", path, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func validateFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for n := 1; ; n++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("document %d: %w", n, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		what, err := validateDoc(doc)
		if err != nil {
			return fmt.Errorf("document %d: %w", n, err)
		}
		fmt.Printf("ok %s %s\n", path, what)
	}
}

func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			out.WriteString(line + "\n")
		}
	}
	return out.Bytes()
}

func validateDoc(doc []byte) (string, error) {
	var meta metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return "", err
	}
	key := meta.APIVersion + "/" + meta.Kind
	make_, known := kinds[key]
	if !known {
		return "", fmt.Errorf("unknown apiVersion/kind %q", key)
	}
	obj := make_()
	// UnmarshalStrict: duplicate keys and fields the type does not have are errors.
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	meta_, ok := obj.(object)
	if !ok {
		return meta.Kind, nil
	}
	if errs := checkMeta(meta_); len(errs) > 0 {
		return "", fmt.Errorf("%s %s: %s", meta.Kind, meta_.GetName(), strings.Join(errs, "; "))
	}
	return meta.Kind + "/" + meta_.GetName(), nil
}

// checkMeta applies the API server's rules for names and labels, which
// decoding alone does not.
func checkMeta(o object) []string {
	var errs []string
	for _, msg := range utilvalidation.IsDNS1123Subdomain(o.GetName()) {
		errs = append(errs, "metadata.name: "+msg)
	}
	if ns := o.GetNamespace(); ns != "" {
		for _, msg := range utilvalidation.IsDNS1123Label(ns) {
			errs = append(errs, "metadata.namespace: "+msg)
		}
	}
	for k, v := range o.GetLabels() {
		for _, msg := range utilvalidation.IsQualifiedName(k) {
			errs = append(errs, "label key "+k+": "+msg)
		}
		for _, msg := range utilvalidation.IsValidLabelValue(v) {
			errs = append(errs, "label "+k+" value: "+msg)
		}
	}
	return errs
}
