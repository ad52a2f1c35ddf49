package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// Errors as Ghost answers them. A Ghost error (@tryghost/errors) has a type, a status,
// a message and an optional context, property, help, code and details; Ghost's error
// handler (@tryghost/mw-error-handler's jsonErrorRenderer) serialises it as
//
//	{"errors":[{"message","context","type","details","property","help","code","id","ghostErrorCode"}]}
//
// with null for what is unset, a fresh random UUID as id, and ghostErrorCode always
// null (no Ghost error sets it). When the request reached an API controller, the
// handler rewrites the texts for people: the message becomes a generic sentence naming
// the action ("Validation error, cannot save webhook.") and the context becomes the
// error's own message followed by its context. Errors raised before a controller (the
// token check, the body parser, unknown routes) keep their own message and context.

// The controller actions, named as Ghost's error handler names them (actionMap: add ->
// save, edit -> edit, destroy -> delete, read -> read, browse -> list; the resource is
// the singular of the docName except for browse).
const (
	actionAdd    = "save webhook"
	actionEdit   = "edit webhook"
	actionDelete = "delete webhook"
	actionRead   = "read webhook"
	actionBrowse = "list webhooks"
	// actionNone: raised before any controller; texts are kept as they are.
	actionNone = ""
)

// userMessages is mw-error-handler's table of generic messages by error type.
var userMessages = map[string]string{
	"BookshelfRelationsError":    "Database error, cannot %s.",
	"InternalServerError":        "Internal server error, cannot %s.",
	"IncorrectUsageError":        "Incorrect usage error, cannot %s.",
	"NotFoundError":              "Resource not found error, cannot %s.",
	"BadRequestError":            "Request not understood error, cannot %s.",
	"UnauthorizedError":          "Authorisation error, cannot %s.",
	"NoPermissionError":          "Permission error, cannot %s.",
	"ValidationError":            "Validation error, cannot %s.",
	"UnsupportedMediaTypeError":  "Unsupported media error, cannot %s.",
	"TooManyRequestsError":       "Too many requests error, cannot %s.",
	"MaintenanceError":           "Server down for maintenance, cannot %s.",
	"MethodNotAllowedError":      "Method not allowed, cannot %s.",
	"RequestEntityTooLargeError": "Request too large, cannot %s.",
	"TokenRevocationError":       "Token is not available, cannot %s.",
	"VersionMismatchError":       "Version mismatch error, cannot %s.",
}

// The statuses of the Ghost error types the relay raises.
var errorStatus = map[string]int{
	"BadRequestError":           http.StatusBadRequest,
	"UnauthorizedError":         http.StatusUnauthorized,
	"NoPermissionError":         http.StatusForbidden,
	"NotFoundError":             http.StatusNotFound,
	"RequestNotAcceptableError": http.StatusNotAcceptable,
	"ConflictError":             http.StatusConflict,
	"ValidationError":           http.StatusUnprocessableEntity,
	"InternalServerError":       http.StatusInternalServerError,
}

// apiError is one Ghost error before rendering. Empty strings and nil details are
// Ghost's undefined/null.
type apiError struct {
	Type     string
	Message  string
	Context  string
	Property string
	Help     string
	Code     string
	Details  any
	// Status overrides the type's status: Ghost wraps body-parser failures in an
	// InternalServerError that keeps the parser's 400 or 413.
	Status int
}

func (e *apiError) Error() string {
	if e.Context != "" {
		return e.Type + ": " + e.Message + " " + e.Context
	}
	return e.Type + ": " + e.Message
}

func (e *apiError) status() int {
	if e.Status != 0 {
		return e.Status
	}
	if s, ok := errorStatus[e.Type]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// ghostErrorBody is one entry of Ghost's error response, in Ghost's key order.
type ghostErrorBody struct {
	Message        string  `json:"message"`
	Context        *string `json:"context"`
	Type           string  `json:"type"`
	Details        any     `json:"details"`
	Property       *string `json:"property"`
	Help           *string `json:"help"`
	Code           *string `json:"code"`
	ID             string  `json:"id"`
	GhostErrorCode *string `json:"ghostErrorCode"`
}

func orNull(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// render is what Ghost's error handler makes of e for a request that reached the
// controller action (actionNone: one that did not).
func (e *apiError) render(action string) ghostErrorBody {
	message, context := e.Message, e.Context
	if action != actionNone {
		if e.Context != "" {
			context = e.Message + " " + e.Context
		} else {
			context = e.Message
		}
		if t, ok := userMessages[e.Type]; ok {
			message = fmt.Sprintf(t, action)
		} else {
			message = fmt.Sprintf("Unknown error - %s, cannot %s.", e.Type, action)
		}
	}
	return ghostErrorBody{
		Message: message, Context: orNull(context), Type: e.Type, Details: e.Details,
		Property: orNull(e.Property), Help: orNull(e.Help), Code: orNull(e.Code),
		ID: uuid.NewString(),
	}
}

// ghostHeaders are what Ghost's API puts on every answer: the version it speaks, and
// that the answer depends on the Accept-Version a client sends.
func ghostHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Version", "v"+ghostSafeVersion)
	w.Header().Set("Vary", "Accept-Version")
}

// writeAPIError answers e as Ghost would, for a request at action.
func writeAPIError(w http.ResponseWriter, action string, e *apiError) {
	// Ghost never lets a proxy or browser cache an error (prepareErrorCacheControl).
	w.Header().Set("Cache-Control", "no-cache, private, no-store, must-revalidate, max-stale=0, post-check=0, pre-check=0")
	writeJSON(w, e.status(), map[string][]ghostErrorBody{"errors": {e.render(action)}})
}

// The texts of Ghost's errors that the relay raises as Ghost does.
const (
	msgNoRootKey         = "No root key ('webhooks') provided."
	msgInvalidIDProvided = "Invalid id provided."
	msgWebhookNotFound   = "Webhook not found."
	msgDuplicate         = "Target URL has already been used for this event."
	// body-parser failures become Ghost's generic 500-type error with the parser's text
	// as context and its status.
	msgUnexpected = "An unexpected error occurred, please try again."
)

// noPermission is Ghost's answer when an integration touches another one's webhook;
// method is the controller's own name for the action ("edit", "destroy").
func noPermission(method string) *apiError {
	return &apiError{
		Type:    "NoPermissionError",
		Message: "You do not have permission to " + method + " this webhook.",
		Context: "You may only " + method + " webhooks that belong to the authenticated integration. Check the supplied Admin API Key.",
	}
}

// ghostSafeVersion is the Ghost version whose Admin API the relay answers as; Ghost
// compares a client's Accept-Version with it when no route matches.
const ghostSafeVersion = "6.65"

// semverCoerce is node-semver's coerce: the first run of up to three dot-separated
// numbers in s, missing parts 0.
var coerceRE = regexp.MustCompile(`(?:^|[^\d])(\d{1,16})(?:\.(\d{1,16}))?(?:\.(\d{1,16}))?(?:$|[^\d])`)

func semverCoerce(s string) ([3]uint64, bool) {
	var v [3]uint64
	m := coerceRE.FindStringSubmatch(s)
	if m == nil {
		return v, false
	}
	for i := 0; i < 3; i++ {
		if m[i+1] != "" {
			n, err := strconv.ParseUint(m[i+1], 10, 64)
			if err != nil {
				return v, false
			}
			v[i] = n
		}
	}
	return v, true
}

func compareVersions(a, b [3]uint64) int {
	for i := range a {
		switch {
		case a[i] < b[i]:
			return -1
		case a[i] > b[i]:
			return 1
		}
	}
	return 0
}

// resourceNotFound answers a request no route takes, as mw-error-handler's
// resourceNotFound does: a client that asked for another Ghost version (Accept-Version)
// is told its version differs; anyone else gets 404.
func resourceNotFound(w http.ResponseWriter, r *http.Request) {
	ghostHeaders(w)
	accept := r.Header.Get("Accept-Version")
	// Ghost rewrites /ghost/api/{v2,v3,v4,canary}/... to the unversioned API and sets
	// Accept-Version from the prefix when the client sent none (canary counts as v4).
	if v := legacyVersion(r.URL.Path); v != "" && accept == "" {
		if v == "canary" {
			v = "v4"
		}
		accept = v + ".0"
	}
	if accept == "" {
		writeAPIError(w, actionNone, &apiError{Type: "NotFoundError", Message: "Resource not found"})
		return
	}
	client, ok := semverCoerce(accept)
	if !ok {
		writeAPIError(w, actionNone, &apiError{Type: "BadRequestError", Message: "Requested version is not supported."})
		return
	}
	ours, _ := semverCoerce(ghostSafeVersion)
	switch compareVersions(client, ours) {
	case 1:
		writeAPIError(w, actionNone, &apiError{
			Type:    "RequestNotAcceptableError",
			Message: "Request could not be served, the endpoint was not found.",
			Context: "Provided client accept-version " + accept + " is ahead of current Ghost version v" + ghostSafeVersion + ".",
			Help:    "Try upgrading your Ghost install.",
			Code:    "UPDATE_GHOST",
		})
	case -1:
		writeAPIError(w, actionNone, &apiError{
			Type:    "RequestNotAcceptableError",
			Message: "Request could not be served, the endpoint was not found.",
			Context: "Provided client accept-version " + accept + " is behind current Ghost version v" + ghostSafeVersion + ".",
			Help:    "Try upgrading your Ghost API client.",
			Code:    "UPDATE_CLIENT",
		})
	default:
		writeAPIError(w, actionNone, &apiError{Type: "NotFoundError", Message: "Resource not found"})
	}
}

// legacyVersion is the version segment Ghost still routes (/ghost/api/v3/admin/...),
// "" for the unversioned API or any other segment.
func legacyVersion(path string) string {
	rest, ok := strings.CutPrefix(path, "/ghost/api/")
	if !ok {
		return ""
	}
	seg, after, _ := strings.Cut(rest, "/")
	if !legacyVersions[seg] {
		return ""
	}
	if api, _, _ := strings.Cut(after, "/"); api != "admin" && api != "content" {
		return ""
	}
	return seg
}

// legacyVersions are the version prefixes Ghost 6 still accepts in API paths
// (legacy-api-path-match.js); any other prefix is an unknown route.
var legacyVersions = map[string]bool{"v2": true, "v3": true, "v4": true, "canary": true}

// jsonBytes is JSON as Express's res.json writes it: no HTML escaping.
func jsonBytes(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}
