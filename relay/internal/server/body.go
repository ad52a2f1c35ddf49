package server

import (
	"errors"
	"io"
	"net/http"
)

// errTooLarge is a body over its endpoint's limit; nothing of it is kept.
var errTooLarge = errors.New("request body too large")

// readBody reads r's body, at most limit bytes: a longer one (by Content-Length or
// once read) is errTooLarge, which endpoints answer 413. An unauthenticated caller can
// make the relay buffer no more than limit.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, errTooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var big *http.MaxBytesError
	if errors.As(err, &big) {
		return nil, errTooLarge
	}
	return body, err
}
