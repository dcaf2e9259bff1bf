package alerts

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// apiAlert is one alert in the shape of Prometheus's /api/v1/alerts
// (web/api/v1 Alert): the same field names, activeAt as an RFC 3339 time
// in UTC and the value as a string in Go's 'e' format.
type apiAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	ActiveAt    *time.Time        `json:"activeAt,omitempty"`
	Value       string            `json:"value"`
}

type apiAlerts struct {
	Alerts []apiAlert `json:"alerts"`
}

type apiResponse struct {
	Status    string     `json:"status"`
	Data      *apiAlerts `json:"data,omitempty"`
	ErrorType string     `json:"errorType,omitempty"`
	Error     string     `json:"error,omitempty"`
}

// errBadState is the one answer to a state parameter other than pending or
// firing.
var errBadState = errors.New("state must be pending or firing")

// formatValue formats an alert value as Prometheus's API does.
func formatValue(v float64) string { return strconv.FormatFloat(v, 'e', -1, 64) }

// ResponseBody returns the JSON body of GET /alerts for the given alerts:
// {"status":"success","data":{"alerts":[...]}}. state, when not empty,
// keeps only alerts in that state ("pending" or "firing").
func ResponseBody(alerts []Alert, state string) ([]byte, error) {
	switch state {
	case "", "pending", "firing":
	default:
		// The value is not repeated: an error never echoes its input.
		return nil, errBadState
	}
	list := make([]apiAlert, 0, len(alerts))
	for _, a := range alerts {
		if a.State == StateInactive || (state != "" && a.State.String() != state) {
			continue
		}
		at := a.ActiveAt.UTC()
		an := a.Annotations
		if an == nil {
			an = map[string]string{}
		}
		list = append(list, apiAlert{
			Labels:      a.Labels,
			Annotations: an,
			State:       a.State.String(),
			ActiveAt:    &at,
			Value:       formatValue(a.Value),
		})
	}
	return json.Marshal(apiResponse{Status: "success", Data: &apiAlerts{Alerts: list}})
}

// Handler serves the Engine's pending and firing alerts as JSON in the
// shape of Prometheus's GET /api/v1/alerts. The optional query parameter
// state=pending or state=firing filters them; any other value is answered
// with 400 and Prometheus's error shape.
func Handler(e *Engine) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSON(w, http.StatusMethodNotAllowed, apiResponse{Status: "error", ErrorType: "bad_data", Error: "method not allowed; use GET or HEAD"})
			return
		}
		body, err := ResponseBody(e.Alerts(), r.URL.Query().Get("state"))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, apiResponse{Status: "error", ErrorType: "bad_data", Error: err.Error()})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
}

func writeJSON(w http.ResponseWriter, code int, v apiResponse) {
	body, _ := json.Marshal(v) // a struct of strings always marshals
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
