// Command k8s-offline prepares the offline validation of examples/kubernetes/:
//
//	k8s-offline schemas DIR           JSON schemas (kubeconform's file names) for
//	                                  the kinds the examples use, from the Go types
//	                                  of k8s.io/api: strict (unknown fields are
//	                                  errors), fields without omitempty required.
//	k8s-offline configs DIR FILE...   each ConfigMap data entry ending in .yaml, as
//	                                  DIR/NAME-KEY, for `otelcol validate`.
//
// kubeconform downloads its schemas at run time, which cannot be done here; the
// Go types are the API's own definition and come from the Go module proxy.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// kinds are the resources the examples use: group ("" for core), version, a value.
var kinds = []struct {
	group, version string
	object         any
}{
	{"apps", "v1", appsv1.Deployment{}},
	{"apps", "v1", appsv1.DaemonSet{}},
	{"apps", "v1", appsv1.StatefulSet{}},
	{"", "v1", corev1.Service{}},
	{"", "v1", corev1.ConfigMap{}},
	{"", "v1", corev1.Namespace{}},
}

func main() {
	if len(os.Args) < 3 {
		fail("usage: k8s-offline schemas DIR | configs DIR FILE...")
	}
	var err error
	switch os.Args[1] {
	case "schemas":
		err = schemas(os.Args[2])
	case "configs":
		err = configs(os.Args[2], os.Args[3:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fail(err.Error())
	}
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "k8s-offline:", message)
	os.Exit(1)
}

func schemas(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, k := range kinds {
		t := reflect.TypeOf(k.object)
		g := generator{definitions: map[string]any{}}
		root := g.object(t)
		apiVersion, suffix := k.version, "-"+k.version
		if k.group != "" {
			apiVersion, suffix = k.group+"/"+k.version, "-"+k.group+"-"+k.version
		}
		props := root["properties"].(map[string]any)
		props["apiVersion"] = map[string]any{"type": "string", "enum": []string{apiVersion}}
		props["kind"] = map[string]any{"type": "string", "enum": []string{t.Name()}}
		root["required"] = append(root["required"].([]string), "apiVersion", "kind")
		root["$schema"] = "http://json-schema.org/draft-07/schema#"
		root["definitions"] = g.definitions
		text, err := json.MarshalIndent(root, "", " ")
		if err != nil {
			return err
		}
		name := filepath.Join(dir, strings.ToLower(t.Name())+suffix+".json")
		if err := os.WriteFile(name, append(text, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

type generator struct {
	definitions map[string]any
}

var (
	quantity    = reflect.TypeOf(resource.Quantity{})
	intOrString = reflect.TypeOf(intstr.IntOrString{})
	timestamp   = reflect.TypeOf(metav1.Time{})
	microTime   = reflect.TypeOf(metav1.MicroTime{})
	raw         = reflect.TypeOf(runtime.RawExtension{})
)

// schema is the schema of a field's type; structs go to definitions, by reference.
func (g *generator) schema(t reflect.Type) map[string]any {
	switch t {
	case quantity:
		return map[string]any{"type": []string{"string", "number"}}
	case intOrString:
		return map[string]any{"type": []string{"string", "integer"}}
	case timestamp, microTime:
		return map[string]any{"type": []string{"string", "null"}}
	case raw:
		return map[string]any{}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.schema(t.Elem())
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string"} // base64
		}
		return map[string]any{"type": []string{"array", "null"}, "items": g.schema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": []string{"object", "null"}, "additionalProperties": g.schema(t.Elem())}
	case reflect.Struct:
		name := strings.ReplaceAll(t.PkgPath(), "/", ".") + "." + t.Name()
		if _, done := g.definitions[name]; !done {
			g.definitions[name] = nil // a recursive type refers to itself
			g.definitions[name] = g.object(t)
		}
		return map[string]any{"$ref": "#/definitions/" + name}
	case reflect.Interface:
		return map[string]any{}
	}
	panic("no schema for " + t.String())
}

// object is a struct's schema: its JSON fields (inline ones merged), no others.
func (g *generator) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	required := []string{}
	g.fields(t, props, &required)
	return map[string]any{
		"type":                 "object",
		"properties":           props,
		"required":             required,
		"additionalProperties": false,
	}
}

func (g *generator) fields(t reflect.Type, props map[string]any, required *[]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, options, _ := strings.Cut(tag, ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if strings.Contains(options, "inline") || (f.Anonymous && name == "") {
			g.fields(f.Type, props, required)
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = g.schema(f.Type)
		if !strings.Contains(options, "omitempty") && f.Type.Kind() != reflect.Pointer {
			*required = append(*required, name)
		}
	}
}

func configs(dir string, files []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, file := range files {
		text, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(text)))
		for {
			doc, err := reader.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			var cm corev1.ConfigMap
			if err := yaml.Unmarshal(doc, &cm); err != nil || cm.Kind != "ConfigMap" {
				continue
			}
			for key, value := range cm.Data {
				if strings.HasSuffix(key, ".yaml") {
					out := filepath.Join(dir, cm.Name+"-"+key)
					if err := os.WriteFile(out, []byte(value), 0o644); err != nil {
						return err
					}
					fmt.Println(out)
				}
			}
		}
	}
	return nil
}

