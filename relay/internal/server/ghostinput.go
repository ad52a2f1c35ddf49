package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/relayhq/relay/relay/internal/webhook"
)

// Ghost's input handling for the webhooks endpoints, step by step as Ghost runs it, so
// that every body Ghost refuses is refused here with Ghost's error (and the same first
// error when several things are wrong):
//
//  1. body-parser: only application/json bodies are read (anything else is {}); a body
//     must start with { or [ and parse (else 400); too large is 413.
//  2. api-framework's shared validators: the id in the path must look like an id; the
//     body must have a non-empty webhooks[0] ("No root key"); on edit, an id in the body
//     must be the path's.
//  3. @tryghost/admin-api-schema's JSON schemas webhooks.add / webhooks.edit, checked by
//     ajv 8 with allErrors and removeAdditional: unknown properties are dropped, and the
//     first failure names the property ("Validation failed for event.") with every ajv
//     error in details.
//  4. The model's schema validation: event and target_url must not be blank.
//
// The relay's own rules (registered event names, absolute http(s) URLs) come after all
// of Ghost's.

// maxAdminBody bounds request bodies; a webhook is a few hundred bytes. (Ghost takes
// 50 MB; anything that large is no webhook.)
const maxAdminBody = 64 << 10

// readGhostBody reads the body as Ghost's body-parser does. It returns nil for a body
// that is absent or not JSON (Ghost's {}), else the parsed value: map[string]any,
// []any, string, json.Number, bool or nil.
func readGhostBody(w http.ResponseWriter, r *http.Request) (any, *apiError) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "application/json" {
		// Not read at all, as body-parser leaves it; drain a little so the connection
		// can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxAdminBody))
		return nil, nil
	}
	if cs, ok := params["charset"]; ok && !strings.HasPrefix(strings.ToLower(cs), "utf-") {
		return nil, &apiError{Type: "InternalServerError", Status: http.StatusUnsupportedMediaType,
			Message: msgUnexpected, Context: `unsupported charset "` + strings.ToUpper(clip(cs, 40)) + `"`, Code: "UNEXPECTED_ERROR"}
	}
	body, err := readBody(w, r, maxAdminBody)
	if errors.Is(err, errTooLarge) {
		return nil, &apiError{Type: "InternalServerError", Status: http.StatusRequestEntityTooLarge,
			Message: msgUnexpected, Context: "request entity too large", Code: "UNEXPECTED_ERROR"}
	}
	if err != nil {
		return nil, &apiError{Type: "InternalServerError", Status: http.StatusBadRequest,
			Message: msgUnexpected, Context: "request aborted", Code: "UNEXPECTED_ERROR"}
	}
	if len(body) == 0 {
		return nil, nil
	}
	// body-parser's strict mode: only an object or an array.
	if first := bytes.TrimLeft(body, " \t\n\r"); len(first) == 0 || (first[0] != '{' && first[0] != '[') {
		return nil, badJSON("Unexpected token in JSON: the body must be a JSON object or array")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, badJSON(err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badJSON("Unexpected non-whitespace character after JSON")
	}
	return v, nil
}

// badJSON is a body that does not parse. Ghost's context is V8's JSON.parse message;
// the relay's is its own parser's.
func badJSON(reason string) *apiError {
	return &apiError{Type: "InternalServerError", Status: http.StatusBadRequest,
		Message: msgUnexpected, Context: reason, Code: "UNEXPECTED_ERROR"}
}

// ghostIDPattern is api-framework's validator for an id option.
var ghostIDPattern = regexp.MustCompile(`^(?i:[a-f\d]{24}|1|me)$`)

// checkGhostID is api-framework's check of the :id in the path. Its context really is
// "undefined.id": Ghost's validator names a table it was not given.
func checkGhostID(id string) *apiError {
	if ghostIDPattern.MatchString(id) {
		return nil
	}
	return &apiError{Type: "ValidationError", Message: "Validation (matches) failed for id", Context: "undefined.id"}
}

// isEmpty is lodash's _.isEmpty on a JSON value.
func isEmpty(v any) bool {
	switch x := v.(type) {
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	default: // null, booleans and numbers have no own keys
		return true
	}
}

// member is JavaScript's v[key] on a JSON value (undefined is nil).
func member(v any, key string) any {
	switch x := v.(type) {
	case map[string]any:
		return x[key]
	case []any:
		if key == "0" && len(x) > 0 {
			return x[0]
		}
	case string:
		if key == "0" && x != "" {
			return firstUTF16Unit(x)
		}
	}
	return nil
}

// firstUTF16Unit is s[0] in JavaScript: one UTF-16 code unit, never empty.
func firstUTF16Unit(s string) string {
	r, _ := utf8.DecodeRuneInString(s)
	if r > 0xFFFF {
		return "\uFFFD" // half a surrogate pair: not empty, which is all that matters
	}
	return string(r)
}

// jsTruthy is JavaScript truthiness of a value decoded by encoding/json (numbers as
// float64 or, with UseNumber, json.Number).
func jsTruthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case string:
		return x != ""
	case float64:
		return x != 0
	case json.Number:
		f, err := x.Float64()
		return err != nil || f != 0
	default:
		return true
	}
}

// checkRootKey is api-framework's shared add/edit validator.
func checkRootKey(data any) *apiError {
	if isEmpty(data) || isEmpty(member(data, "webhooks")) || isEmpty(member(member(data, "webhooks"), "0")) {
		return &apiError{Type: "BadRequestError", Message: msgNoRootKey}
	}
	return nil
}

// validateAddBody runs Ghost's validators of webhooks.add on a parsed body.
func validateAddBody(data any) *apiError {
	if e := checkRootKey(data); e != nil {
		return e
	}
	// Ghost's webhooks add validator also demands an integration_id when no integration
	// is authenticated; here every caller is one.
	return schemaError(validateSchema(webhooksAddSchema, data, "", "#"))
}

// validateEditBody runs Ghost's validators of webhooks.edit on a parsed body.
func validateEditBody(id string, data any) *apiError {
	if e := checkGhostID(id); e != nil {
		return e
	}
	if e := checkRootKey(data); e != nil {
		return e
	}
	if bodyID := member(member(member(data, "webhooks"), "0"), "id"); jsTruthy(bodyID) {
		if s, ok := bodyID.(string); !ok || s != id {
			return &apiError{Type: "BadRequestError", Message: msgInvalidIDProvided}
		}
	}
	return schemaError(validateSchema(webhooksEditSchema, data, "", "#"))
}

// schemaError is admin-api-schema's ValidationError for ajv's errors: the first one
// names the property (the last segment of its instancePath, or the schema's resource).
func schemaError(errs []ajvError) *apiError {
	if len(errs) == 0 {
		return nil
	}
	key := "webhooks"
	if p := errs[0].InstancePath; p != "" {
		key = p[strings.LastIndex(p, "/")+1:]
	}
	return &apiError{Type: "ValidationError", Message: "Validation failed for " + key + ".", Property: key, Details: errs}
}

// blankError is the model's check that a required column is not empty.
func blankError(column string) *apiError {
	return &apiError{Type: "ValidationError",
		Message: "Value in [webhooks." + column + "] cannot be blank.", Context: "webhooks." + column}
}

// ajvError is one error of ajv 8, in its key order.
type ajvError struct {
	InstancePath string         `json:"instancePath"`
	SchemaPath   string         `json:"schemaPath"`
	Keyword      string         `json:"keyword"`
	Params       map[string]any `json:"params"`
	Message      string         `json:"message"`
}

// jsonSchema is the part of JSON Schema that Ghost's webhook schemas use.
type jsonSchema struct {
	Types      []string
	MaxItems   int // 0: none
	MinItems   int
	Items      *jsonSchema
	Required   []string
	Properties []namedSchema // in the schema's order, which is ajv's
	MaxLength  int
	Format     string // "uri-reference"
	Lowercase  bool   // Ghost's isLowercase keyword
	// AllOf holds $ref'd schemas, inlined by ajv: their errors' schemaPath starts at
	// the reference (RefPath), not at allOf.
	AllOf   []*jsonSchema
	RefPath string
}

type namedSchema struct {
	Name   string
	Schema *jsonSchema
}

func webhookProperties(withIntegration bool) []namedSchema {
	nullable := func(n int) *jsonSchema { return &jsonSchema{Types: []string{"string", "null"}, MaxLength: n} }
	props := []namedSchema{
		{"event", &jsonSchema{Types: []string{"string"}, MaxLength: 50, Lowercase: true}},
		{"target_url", &jsonSchema{Types: []string{"string"}, Format: "uri-reference", MaxLength: 2000}},
		{"name", nullable(191)},
		{"secret", nullable(191)},
		{"api_version", nullable(50)},
	}
	if withIntegration {
		props = append(props, namedSchema{"integration_id", nullable(24)})
	}
	return props
}

var (
	// webhooks.add: each item allOf webhooks#/definitions/webhook, event and target_url required.
	webhooksAddSchema = &jsonSchema{Types: []string{"object"}, Required: []string{"webhooks"}, Properties: []namedSchema{
		{"webhooks", &jsonSchema{Types: []string{"array"}, MinItems: 1, MaxItems: 1, Items: &jsonSchema{
			Types:    []string{"object"},
			AllOf:    []*jsonSchema{{Types: []string{"object"}, Properties: webhookProperties(true), RefPath: "webhooks#/definitions/webhook"}},
			Required: []string{"event", "target_url"},
		}}},
	}}
	// webhooks.edit: the same properties inline, no integration_id, nothing required.
	webhooksEditSchema = &jsonSchema{Types: []string{"object"}, Required: []string{"webhooks"}, Properties: []namedSchema{
		{"webhooks", &jsonSchema{Types: []string{"array"}, MinItems: 1, MaxItems: 1, Items: &jsonSchema{
			Types: []string{"object"}, Properties: webhookProperties(false),
		}}},
	}}
)

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	default:
		return "object"
	}
}

func (s *jsonSchema) hasRulesFor(t string) bool {
	switch t {
	case "string":
		return s.MaxLength > 0 || s.Format != "" || s.Lowercase
	case "array":
		return s.MaxItems > 0 || s.MinItems > 0 || s.Items != nil
	case "object":
		return len(s.Required) > 0 || len(s.Properties) > 0
	}
	return false
}

func typeError(s *jsonSchema, instancePath, schemaPath string) ajvError {
	var t any = s.Types[0]
	if len(s.Types) > 1 {
		t = s.Types
	}
	return ajvError{InstancePath: instancePath, SchemaPath: schemaPath + "/type", Keyword: "type",
		Params: map[string]any{"type": t}, Message: "must be " + strings.Join(s.Types, ",")}
}

// validateSchema checks data against s the way ajv 8's generated code does with
// allErrors: a type check first when it is not implied by a group, then the keywords
// without a type (allOf), then the string, array and object keywords, each group only
// for data of its type and reporting the type error itself when it is the only type.
// Within a group the order is ajv's: maxLength, format, then custom keywords; maxItems,
// minItems, items; required, then properties.
func validateSchema(s *jsonSchema, data any, instancePath, schemaPath string) []ajvError {
	if s.RefPath != "" {
		schemaPath = s.RefPath
	}
	var errs []ajvError
	dt := jsonType(data)
	matches := false
	for _, t := range s.Types {
		matches = matches || t == dt
	}
	single := len(s.Types) == 1
	checkedTypes := len(s.Types) > 0 && !(single && s.hasRulesFor(s.Types[0]))
	if checkedTypes && !matches {
		errs = append(errs, typeError(s, instancePath, schemaPath))
	}
	for i, sub := range s.AllOf {
		errs = append(errs, validateSchema(sub, data, instancePath, schemaPath+"/allOf/"+itoa(i))...)
	}
	group := func(t string, check func()) {
		if !s.hasRulesFor(t) {
			return
		}
		if dt == t {
			check()
		} else if single && s.Types[0] == t && !checkedTypes {
			errs = append(errs, typeError(s, instancePath, schemaPath))
		}
	}
	group("string", func() {
		str := data.(string)
		if s.MaxLength > 0 && utf8.RuneCountInString(str) > s.MaxLength {
			errs = append(errs, ajvError{instancePath, schemaPath + "/maxLength", "maxLength",
				map[string]any{"limit": s.MaxLength}, "must NOT have more than " + itoa(s.MaxLength) + " characters"})
		}
		if s.Format == "uri-reference" && !uriReference.MatchString(str) {
			errs = append(errs, ajvError{instancePath, schemaPath + "/format", "format",
				map[string]any{"format": s.Format}, `must match format "` + s.Format + `"`})
		}
		if s.Lowercase && str != strings.ToLower(str) {
			errs = append(errs, ajvError{instancePath, schemaPath + "/isLowercase", "isLowercase",
				map[string]any{}, `must pass "isLowercase" keyword validation`})
		}
	})
	group("array", func() {
		list := data.([]any)
		if s.MaxItems > 0 && len(list) > s.MaxItems {
			errs = append(errs, ajvError{instancePath, schemaPath + "/maxItems", "maxItems",
				map[string]any{"limit": s.MaxItems}, "must NOT have more than " + itoa(s.MaxItems) + " items"})
		}
		if s.MinItems > 0 && len(list) < s.MinItems {
			errs = append(errs, ajvError{instancePath, schemaPath + "/minItems", "minItems",
				map[string]any{"limit": s.MinItems}, "must NOT have fewer than " + itoa(s.MinItems) + " items"})
		}
		if s.Items != nil {
			for i, item := range list {
				errs = append(errs, validateSchema(s.Items, item, instancePath+"/"+itoa(i), schemaPath+"/items")...)
			}
		}
	})
	group("object", func() {
		obj := data.(map[string]any)
		for _, name := range s.Required {
			if _, ok := obj[name]; !ok {
				errs = append(errs, ajvError{instancePath, schemaPath + "/required", "required",
					map[string]any{"missingProperty": name}, "must have required property '" + name + "'"})
			}
		}
		// additionalProperties: false with removeAdditional drops unknown properties
		// without an error; the relay reads only the known ones afterwards.
		for _, p := range s.Properties {
			if v, ok := obj[p.Name]; ok {
				errs = append(errs, validateSchema(p.Schema, v, instancePath+"/"+jsonPointerEscape(p.Name), schemaPath+"/properties/"+p.Name)...)
			}
		}
	})
	return errs
}

func jsonPointerEscape(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

func itoa(n int) string { return strconv.Itoa(n) }

// uriReference is ajv-formats' "uri-reference" (full mode), the format Ghost requires of
// target_url. The original is case-insensitive; JavaScript's /i folds only ASCII here,
// so the letter ranges are spelt out instead of using RE2's Unicode case folding.
var uriReference = regexp.MustCompile(strings.NewReplacer("a-z", "a-zA-Z", "a-f", "a-fA-F").Replace(
	`^(?:[a-z][a-z0-9+\-.]*:)?(?:\/?\/(?:(?:[a-z0-9\-._~!$&'()*+,;=:]|%[0-9a-f]{2})*@)?(?:\[(?:(?:(?:(?:[0-9a-f]{1,4}:){6}|::(?:[0-9a-f]{1,4}:){5}|(?:[0-9a-f]{1,4})?::(?:[0-9a-f]{1,4}:){4}|(?:(?:[0-9a-f]{1,4}:){0,1}[0-9a-f]{1,4})?::(?:[0-9a-f]{1,4}:){3}|(?:(?:[0-9a-f]{1,4}:){0,2}[0-9a-f]{1,4})?::(?:[0-9a-f]{1,4}:){2}|(?:(?:[0-9a-f]{1,4}:){0,3}[0-9a-f]{1,4})?::[0-9a-f]{1,4}:|(?:(?:[0-9a-f]{1,4}:){0,4}[0-9a-f]{1,4})?::)(?:[0-9a-f]{1,4}:[0-9a-f]{1,4}|(?:(?:25[0-5]|2[0-4]\d|[01]?\d\d?)\.){3}(?:25[0-5]|2[0-4]\d|[01]?\d\d?))|(?:(?:[0-9a-f]{1,4}:){0,5}[0-9a-f]{1,4})?::[0-9a-f]{1,4}|(?:(?:[0-9a-f]{1,4}:){0,6}[0-9a-f]{1,4})?::)|[Vv][0-9a-f]+\.[a-z0-9\-._~!$&'()*+,;=:]+)\]|(?:(?:25[0-5]|2[0-4]\d|[01]?\d\d?)\.){3}(?:25[0-5]|2[0-4]\d|[01]?\d\d?)|(?:[a-z0-9\-._~!$&'"()*+,;=]|%[0-9a-f]{2})*)(?::\d*)?(?:\/(?:[a-z0-9\-._~!$&'"()*+,;=:@]|%[0-9a-f]{2})*)*|\/(?:(?:[a-z0-9\-._~!$&'"()*+,;=:@]|%[0-9a-f]{2})+(?:\/(?:[a-z0-9\-._~!$&'"()*+,;=:@]|%[0-9a-f]{2})*)*)?|(?:[a-z0-9\-._~!$&'"()*+,;=:@]|%[0-9a-f]{2})+(?:\/(?:[a-z0-9\-._~!$&'"()*+,;=:@]|%[0-9a-f]{2})*)*)?(?:\?(?:[a-z0-9\-._~!$&'"()*+,;=:@/?]|%[0-9a-f]{2})*)?(?:#(?:[a-z0-9\-._~!$&'"()*+,;=:@/?]|%[0-9a-f]{2})*)?$`))

// webhookFields reads the validated item of a body into the relay's input. Only the
// properties of Ghost's schema are read (ajv dropped the rest), plus the relay's own
// "status" on edit.
func webhookFields(data any, edit bool) (webhook.Input, *apiError) {
	item, _ := member(member(data, "webhooks"), "0").(map[string]any)
	var in webhook.Input
	str := func(k string) *string {
		if s, ok := item[k].(string); ok {
			return &s
		}
		return nil
	}
	nullable := func(k string) webhook.Nullable {
		v, ok := item[k]
		if !ok {
			return webhook.Nullable{}
		}
		s, _ := v.(string)
		if v == nil {
			return webhook.Nullable{Set: true}
		}
		return webhook.Value(s)
	}
	in.Event, in.TargetURL, in.APIVersion = str("event"), str("target_url"), str("api_version")
	in.Name, in.Secret = nullable("name"), nullable("secret")
	if edit {
		if v, ok := item["status"]; ok {
			s, isStr := v.(string)
			if !isStr || webhook.ValidateStatus(s) != nil {
				return in, &apiError{Type: "ValidationError", Message: "Validation failed for status.", Property: "status",
					Help: "status is the relay's: \"active\" re-enables a disabled webhook, \"disabled\" disables it."}
			}
			in.Status = &s
		}
	}
	// The model's own check: a required column that is set must not be blank.
	switch {
	case in.Event != nil && *in.Event == "":
		return in, blankError("event")
	case in.TargetURL != nil && *in.TargetURL == "":
		return in, blankError("target_url")
	}
	return in, nil
}
