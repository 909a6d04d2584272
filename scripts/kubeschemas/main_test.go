package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFileNameIsKubeconformLookupName(t *testing.T) {
	for _, tc := range []struct{ kind, group, version, want string }{
		{"Service", "", "v1", "service-v1.json"},
		{"Deployment", "apps", "v1", "deployment-apps-v1.json"},
		{"NetworkPolicy", "networking.k8s.io", "v1", "networkpolicy-networking-v1.json"},
		{"HorizontalPodAutoscaler", "autoscaling", "v2", "horizontalpodautoscaler-autoscaling-v2.json"},
	} {
		if got := fileName(tc.kind, tc.group, tc.version); got != tc.want {
			t.Errorf("fileName(%s, %s, %s): got %s, want %s", tc.kind, tc.group, tc.version, got, tc.want)
		}
	}
}

func TestRunWritesStandaloneStrictSchemas(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "swagger.json")
	doc := `{"definitions": {
	  "io.k8s.api.core.v1.Thing": {"type": "object", "x-kubernetes-group-version-kind": [{"group": "", "kind": "Thing", "version": "v1"}],
	    "description": "a thing", "properties": {"spec": {"$ref": "#/definitions/io.k8s.api.core.v1.ThingSpec"}}},
	  "io.k8s.api.core.v1.ThingSpec": {"type": "object", "properties": {"port": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"}}},
	  "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"},
	  "io.k8s.api.core.v1.Unused": {"type": "object"}}}`
	if err := os.WriteFile(spec, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	var log strings.Builder
	if err := run([]string{"-spec", spec, "-out", out}, &log); err != nil {
		t.Fatalf("run: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(out, "thing-v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	if schema["additionalProperties"] != false {
		t.Errorf("root additionalProperties: got %v, want false (strict)", schema["additionalProperties"])
	}
	if _, ok := schema["description"]; ok {
		t.Errorf("description kept; want it dropped")
	}
	defs, _ := schema["definitions"].(map[string]any)
	if len(defs) != 2 {
		t.Errorf("definitions: got %d, want the 2 reachable ones: %v", len(defs), defs)
	}
	ios, _ := defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"].(map[string]any)
	if _, ok := ios["oneOf"]; !ok {
		t.Errorf("IntOrString: got %v, want a oneOf of string and integer", ios)
	}
}
