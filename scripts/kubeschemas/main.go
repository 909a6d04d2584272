// Command kubeschemas turns the Kubernetes OpenAPI v2 document (api/openapi-spec/swagger.json
// in the k8s.io/kubernetes module) into the per-kind standalone, strict JSON schemas that
// kubeconform reads with -schema-location '<dir>/{{ .ResourceKind }}{{ .KindSuffix }}.json'.
//
// It exists because kubeconform normally downloads those schemas, and the only networks CI
// reaches are package registries: the Go module proxy serves k8s.io/kubernetes, whose swagger
// document is the source those published schemas are generated from. The conversion follows
// kubeconform's openapi2jsonschema: every kind becomes one file holding its schema plus the
// definitions it reaches, objects reject unknown fields (strict), int-or-string and quantities
// accept both strings and numbers.
//
// Usage: go run ./scripts/kubeschemas -spec swagger.json -out DIR
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

const refPrefix = "#/definitions/"

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kubeschemas:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("kubeschemas", flag.ContinueOnError)
	spec := fs.String("spec", "", "Kubernetes OpenAPI v2 document (swagger.json)")
	out := fs.String("out", "", "directory to write the schemas into")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *spec == "" || *out == "" {
		return errors.New("-spec and -out are required")
	}
	data, err := os.ReadFile(*spec)
	if err != nil {
		return err
	}
	var doc struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("parse %s: %w", *spec, err)
	}
	if len(doc.Definitions) == 0 {
		return fmt.Errorf("%s has no definitions", *spec)
	}
	defs := make(map[string]any, len(doc.Definitions))
	for name, d := range doc.Definitions {
		defs[name] = normalize(name, d)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	n, err := writeKinds(*out, doc.Definitions, defs)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "kubeschemas: wrote %d schemas to %s\n", n, *out)
	return err
}

// writeKinds writes one file per group-version-kind and returns how many it wrote.
func writeKinds(dir string, raw map[string]map[string]any, defs map[string]any) (int, error) {
	names := make([]string, 0, len(raw))
	for name := range raw {
		names = append(names, name)
	}
	sort.Strings(names)
	written := 0
	for _, name := range names {
		gvks, _ := raw[name]["x-kubernetes-group-version-kind"].([]any)
		for _, g := range gvks {
			gvk, _ := g.(map[string]any)
			file := fileName(str(gvk["kind"]), str(gvk["group"]), str(gvk["version"]))
			schema := standalone(name, defs)
			b, err := json.MarshalIndent(schema, "", " ")
			if err != nil {
				return written, err
			}
			if err := os.WriteFile(filepath.Join(dir, file), b, 0o644); err != nil {
				return written, err
			}
			written++
		}
	}
	return written, nil
}

// fileName is kubeconform's name for a kind: kind, first label of the group, version.
func fileName(kind, group, version string) string {
	suffix := ""
	if group != "" {
		suffix = "-" + strings.ToLower(strings.Split(group, ".")[0])
	}
	return strings.ToLower(kind) + suffix + "-" + strings.ToLower(version) + ".json"
}

// standalone returns the schema of definition name with every definition it reaches
// copied beside it, so the file resolves its references without any other file.
func standalone(name string, defs map[string]any) map[string]any {
	reached := map[string]any{}
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			if ref, ok := t["$ref"].(string); ok && strings.HasPrefix(ref, refPrefix) {
				target := strings.TrimPrefix(ref, refPrefix)
				if _, seen := reached[target]; !seen {
					reached[target] = defs[target]
					walk(defs[target])
				}
			}
			for _, c := range t {
				walk(c)
			}
		case []any:
			for _, c := range t {
				walk(c)
			}
		}
	}
	root := map[string]any{}
	for k, v := range defs[name].(map[string]any) {
		root[k] = v
	}
	walk(root)
	root["$schema"] = "http://json-schema.org/draft-07/schema#"
	root["definitions"] = reached
	return root
}

// normalize rewrites one definition for validation: strict objects, and the two string
// types that manifests also write as numbers.
func normalize(name string, d map[string]any) map[string]any {
	switch name {
	case "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
		return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}
	case "io.k8s.apimachinery.pkg.api.resource.Quantity":
		return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}
	}
	return strict(d).(map[string]any)
}

// strict drops the vendor extensions and description text and makes every object that
// lists its properties reject the ones it does not list (what kubectl's strict decoding does).
func strict(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t)+1)
		for k, c := range t {
			if strings.HasPrefix(k, "x-kubernetes-") || k == "description" {
				continue
			}
			if k == "properties" {
				props := map[string]any{}
				for pk, pv := range c.(map[string]any) {
					props[pk] = strict(pv)
				}
				out[k] = props
				continue
			}
			out[k] = strict(c)
		}
		if _, ok := out["properties"]; ok {
			if _, set := out["additionalProperties"]; !set {
				out["additionalProperties"] = false
			}
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, c := range t {
			out[i] = strict(c)
		}
		return out
	default:
		return v
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
