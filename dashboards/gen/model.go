package main

// This file holds the subset of Grafana's dashboard JSON model the generator
// writes, and small builders that lay panels out on the 24-column grid.

import (
	"fmt"
	"strings"
)

// datasourceVar is the reference every panel and target uses: the dashboard's
// own datasource variable, never a fixed datasource uid.
const datasourceVar = "${datasource}"

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func promDS() *dsRef { return &dsRef{Type: "prometheus", UID: datasourceVar} }

type gridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

type target struct {
	Datasource   *dsRef `json:"datasource"`
	EditorMode   string `json:"editorMode"`
	Expr         string `json:"expr"`
	Format       string `json:"format"`
	Instant      bool   `json:"instant"`
	LegendFormat string `json:"legendFormat,omitempty"`
	Range        bool   `json:"range"`
	RefID        string `json:"refId"`
}

type threshold struct {
	Color string   `json:"color"`
	Value *float64 `json:"value"`
}

type thresholds struct {
	Mode  string      `json:"mode"`
	Steps []threshold `json:"steps"`
}

type fieldDefaults struct {
	Color      map[string]any `json:"color,omitempty"`
	Custom     map[string]any `json:"custom,omitempty"`
	Decimals   *int           `json:"decimals,omitempty"`
	Mappings   []any          `json:"mappings"`
	Max        *float64       `json:"max,omitempty"`
	Min        *float64       `json:"min,omitempty"`
	Thresholds thresholds     `json:"thresholds"`
	Unit       string         `json:"unit"`
}

type override struct {
	Matcher    map[string]any   `json:"matcher"`
	Properties []map[string]any `json:"properties"`
}

type fieldConfig struct {
	Defaults  fieldDefaults `json:"defaults"`
	Overrides []override    `json:"overrides"`
}

type transformation struct {
	ID      string         `json:"id"`
	Options map[string]any `json:"options"`
}

type panel struct {
	Collapsed       *bool            `json:"collapsed,omitempty"`
	Datasource      *dsRef           `json:"datasource"`
	Description     string           `json:"description,omitempty"`
	FieldConfig     *fieldConfig     `json:"fieldConfig,omitempty"`
	GridPos         gridPos          `json:"gridPos"`
	ID              int              `json:"id"`
	Options         map[string]any   `json:"options,omitempty"`
	Panels          []panel          `json:"panels,omitempty"`
	Targets         []target         `json:"targets,omitempty"`
	Title           string           `json:"title"`
	Transformations []transformation `json:"transformations,omitempty"`
	Type            string           `json:"type"`
}

type variableQuery struct {
	QryType int    `json:"qryType"`
	Query   string `json:"query"`
	RefID   string `json:"refId"`
}

type variable struct {
	AllValue    string         `json:"allValue,omitempty"`
	Current     map[string]any `json:"current"`
	Datasource  *dsRef         `json:"datasource,omitempty"`
	Definition  string         `json:"definition,omitempty"`
	Description string         `json:"description,omitempty"`
	Hide        int            `json:"hide"`
	IncludeAll  bool           `json:"includeAll"`
	Label       string         `json:"label"`
	Multi       bool           `json:"multi"`
	Name        string         `json:"name"`
	Options     []any          `json:"options"`
	Query       any            `json:"query"`
	Refresh     int            `json:"refresh"`
	Regex       string         `json:"regex"`
	Sort        int            `json:"sort"`
	Type        string         `json:"type"`
}

type link struct {
	AsDropdown  bool     `json:"asDropdown"`
	Icon        string   `json:"icon"`
	IncludeVars bool     `json:"includeVars"`
	KeepTime    bool     `json:"keepTime"`
	Tags        []string `json:"tags"`
	TargetBlank bool     `json:"targetBlank"`
	Title       string   `json:"title"`
	Type        string   `json:"type"`
}

type dashboard struct {
	Annotations          map[string]any    `json:"annotations"`
	Description          string            `json:"description"`
	Editable             bool              `json:"editable"`
	FiscalYearStartMonth int               `json:"fiscalYearStartMonth"`
	GraphTooltip         int               `json:"graphTooltip"`
	ID                   *int              `json:"id"`
	Links                []link            `json:"links"`
	Panels               []panel           `json:"panels"`
	Refresh              string            `json:"refresh"`
	SchemaVersion        int               `json:"schemaVersion"`
	Tags                 []string          `json:"tags"`
	Templating           map[string][]any  `json:"templating"`
	Time                 map[string]string `json:"time"`
	Timepicker           map[string]any    `json:"timepicker"`
	Timezone             string            `json:"timezone"`
	Title                string            `json:"title"`
	UID                  string            `json:"uid"`
	Version              int               `json:"version"`
	WeekStart            string            `json:"weekStart"`
	extraVars            []variable        `json:"-"`
	layout               *layout           `json:"-"`
}

// layout places panels left to right, wrapping at 24 columns.
type layout struct {
	x, y, rowH int
	nextID     int
	panels     []panel
}

func (l *layout) add(w, h int, p panel) {
	if l.x+w > 24 {
		l.y += l.rowH
		l.x, l.rowH = 0, 0
	}
	l.nextID++
	p.ID = l.nextID
	p.GridPos = gridPos{H: h, W: w, X: l.x, Y: l.y}
	l.panels = append(l.panels, p)
	l.x += w
	if h > l.rowH {
		l.rowH = h
	}
}

func (l *layout) row(title string) {
	if l.x > 0 || l.rowH > 0 {
		l.y += l.rowH
		l.x, l.rowH = 0, 0
	}
	collapsed := false
	l.nextID++
	l.panels = append(l.panels, panel{
		Collapsed:  &collapsed,
		Datasource: promDS(),
		GridPos:    gridPos{H: 1, W: 24, X: 0, Y: l.y},
		ID:         l.nextID,
		Title:      title,
		Type:       "row",
	})
	l.y++
}

// Selector fragments. Every query filters on the dashboard's variables.
const (
	selNode = `job=~"$job", instance=~"$instance"`
	selPod  = `job=~"$job", instance=~"$instance", namespace=~"$namespace", pod=~"$pod"`
)

// q returns a range query with a legend.
func q(expr, legend string) target {
	return target{Expr: expr, LegendFormat: legend, Format: "time_series", Range: true}
}

// tableQ returns an instant query in table format.
func tableQ(expr string) target {
	return target{Expr: expr, Format: "table", Instant: true}
}

func finishTargets(ts []target) []target {
	out := make([]target, len(ts))
	for i, t := range ts {
		t.Datasource = promDS()
		t.EditorMode = "code"
		t.RefID = string(rune('A' + i))
		out[i] = t
	}
	return out
}

func fp(v float64) *float64 { return &v }

// steps builds thresholds: green below the first value, then the given colors.
func steps(pairs ...any) thresholds {
	t := thresholds{Mode: "absolute", Steps: []threshold{{Color: "green"}}}
	for i := 0; i+1 < len(pairs); i += 2 {
		t.Steps = append(t.Steps, threshold{Color: pairs[i+1].(string), Value: fp(pairs[i].(float64))})
	}
	return t
}

type panelOpt func(*panel)

func withUnit(unit string) panelOpt {
	return func(p *panel) { p.FieldConfig.Defaults.Unit = unit }
}

func withMinMax(lo, hi float64) panelOpt { //nolint:unused // kept for bounded panels; none today
	return func(p *panel) {
		p.FieldConfig.Defaults.Min = fp(lo)
		p.FieldConfig.Defaults.Max = fp(hi)
	}
}

func withThresholds(t thresholds, style string) panelOpt {
	return func(p *panel) {
		p.FieldConfig.Defaults.Thresholds = t
		if p.FieldConfig.Defaults.Custom != nil && style != "" {
			p.FieldConfig.Defaults.Custom["thresholdsStyle"] = map[string]any{"mode": style}
		}
	}
}

func withStack() panelOpt { //nolint:unused // kept for stacked panels; no dashboard stacks today
	return func(p *panel) {
		p.FieldConfig.Defaults.Custom["stacking"] = map[string]any{"group": "A", "mode": "normal"}
		p.FieldConfig.Defaults.Custom["fillOpacity"] = 30
	}
}

// withDashedRegexp draws the series whose display name matches re dashed:
// limits drawn against the values they bound.
func withDashedRegexp(re string) panelOpt {
	return func(p *panel) {
		p.FieldConfig.Overrides = append(p.FieldConfig.Overrides, override{
			Matcher: map[string]any{"id": "byRegexp", "options": re},
			Properties: []map[string]any{
				{"id": "custom.lineStyle", "value": map[string]any{"dash": []int{10, 10}, "fill": "dash"}},
				{"id": "custom.fillOpacity", "value": 0},
				{"id": "color", "value": map[string]any{"fixedColor": "red", "mode": "fixed"}},
			},
		})
	}
}

// withUnitRegexp sets the unit of the series whose display name matches re:
// a second quantity drawn in the same panel.
func withUnitRegexp(re, unit string) panelOpt {
	return func(p *panel) {
		p.FieldConfig.Overrides = append(p.FieldConfig.Overrides, override{
			Matcher:    map[string]any{"id": "byRegexp", "options": re},
			Properties: []map[string]any{{"id": "unit", "value": unit}, {"id": "custom.axisPlacement", "value": "right"}},
		})
	}
}

func withDescription(d string) panelOpt {
	return func(p *panel) { p.Description = d }
}

func timeseries(title string, targets []target, opts ...panelOpt) panel {
	p := panel{
		Datasource: promDS(),
		FieldConfig: &fieldConfig{
			Defaults: fieldDefaults{
				Color: map[string]any{"mode": "palette-classic"},
				Custom: map[string]any{
					"drawStyle":         "line",
					"fillOpacity":       10,
					"lineWidth":         1,
					"pointSize":         4,
					"showPoints":        "never",
					"spanNulls":         false,
					"stacking":          map[string]any{"group": "A", "mode": "none"},
					"thresholdsStyle":   map[string]any{"mode": "off"},
					"axisSoftMin":       0,
					"gradientMode":      "none",
					"lineInterpolation": "linear",
				},
				Mappings:   []any{},
				Thresholds: steps(),
				Unit:       "short",
			},
			Overrides: []override{},
		},
		Options: map[string]any{
			"legend":  map[string]any{"calcs": []string{"lastNotNull", "max"}, "displayMode": "table", "placement": "bottom", "showLegend": true},
			"tooltip": map[string]any{"mode": "multi", "sort": "desc"},
		},
		Targets: finishTargets(targets),
		Title:   title,
		Type:    "timeseries",
	}
	for _, o := range opts {
		o(&p)
	}
	return p
}

func stat(title string, t target, opts ...panelOpt) panel {
	p := panel{
		Datasource: promDS(),
		FieldConfig: &fieldConfig{
			Defaults: fieldDefaults{
				Color:      map[string]any{"mode": "thresholds"},
				Mappings:   []any{},
				Thresholds: steps(),
				Unit:       "short",
			},
			Overrides: []override{},
		},
		Options: map[string]any{
			"colorMode":     "value",
			"graphMode":     "area",
			"justifyMode":   "auto",
			"orientation":   "auto",
			"reduceOptions": map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": false},
			"textMode":      "auto",
		},
		Targets: finishTargets([]target{t}),
		Title:   title,
		Type:    "stat",
	}
	for _, o := range opts {
		o(&p)
	}
	return p
}

// table shows instant queries merged into one row per label set. rename maps
// the merged "Value #<refId>" columns to readable names.
func table(title string, targets []target, rename map[string]string, opts ...panelOpt) panel {
	renameByName := map[string]any{}
	for k, v := range rename {
		renameByName[k] = v
	}
	exclude := map[string]any{"Time": true, "__name__": true}
	p := panel{
		Datasource: promDS(),
		FieldConfig: &fieldConfig{
			Defaults: fieldDefaults{
				Custom:     map[string]any{"align": "auto", "cellOptions": map[string]any{"type": "auto"}, "inspect": false},
				Mappings:   []any{},
				Thresholds: steps(),
				Unit:       "short",
			},
			Overrides: []override{},
		},
		Options: map[string]any{
			"cellHeight": "sm",
			"footer":     map[string]any{"countRows": false, "fields": "", "reducer": []string{"sum"}, "show": false},
			"showHeader": true,
		},
		Targets: finishTargets(targets),
		Title:   title,
		Transformations: []transformation{
			{ID: "merge", Options: map[string]any{}},
			{ID: "organize", Options: map[string]any{"excludeByName": exclude, "indexByName": map[string]any{}, "renameByName": renameByName}},
		},
		Type: "table",
	}
	for _, o := range opts {
		o(&p)
	}
	return p
}

// withColumnUnit sets the unit of one table column (by its name after renaming).
func withColumnUnit(column, unit string) panelOpt {
	return func(p *panel) {
		p.FieldConfig.Overrides = append(p.FieldConfig.Overrides, override{
			Matcher:    map[string]any{"id": "byName", "options": column},
			Properties: []map[string]any{{"id": "unit", "value": unit}},
		})
	}
}

// withHiddenColumns hides table columns such as "Value" of a label-only table.
func withHiddenColumns(cols ...string) panelOpt {
	return func(p *panel) {
		for _, tr := range p.Transformations {
			if tr.ID == "organize" {
				ex := tr.Options["excludeByName"].(map[string]any)
				for _, c := range cols {
					ex[c] = true
				}
			}
		}
	}
}

// stateTimeline shows values 1 (pending) and 2 (firing) as colored bands.
func stateTimeline(title string, targets []target, opts ...panelOpt) panel {
	p := panel{
		Datasource: promDS(),
		FieldConfig: &fieldConfig{
			Defaults: fieldDefaults{
				Color:  map[string]any{"mode": "thresholds"},
				Custom: map[string]any{"fillOpacity": 70, "hideFrom": map[string]any{"legend": false, "tooltip": false, "viz": false}, "lineWidth": 0},
				Mappings: []any{map[string]any{
					"type": "value",
					"options": map[string]any{
						"1": map[string]any{"color": "yellow", "index": 0, "text": "pending"},
						"2": map[string]any{"color": "red", "index": 1, "text": "firing"},
					},
				}},
				Thresholds: steps(),
				Unit:       "none",
			},
			Overrides: []override{},
		},
		Options: map[string]any{
			"alignValue":  "left",
			"legend":      map[string]any{"displayMode": "list", "placement": "bottom", "showLegend": false},
			"mergeValues": true,
			"rowHeight":   0.9,
			"showValue":   "never",
			"tooltip":     map[string]any{"mode": "single", "sort": "none"},
		},
		Targets: finishTargets(targets),
		Title:   title,
		Type:    "state-timeline",
	}
	for _, o := range opts {
		o(&p)
	}
	return p
}

func datasourceVariable() variable {
	return variable{
		Current: map[string]any{},
		Hide:    0,
		Label:   "Data source",
		Name:    "datasource",
		Options: []any{},
		Query:   "prometheus",
		Refresh: 1,
		Regex:   "",
		Type:    "datasource",
	}
}

// queryVariable is a label_values variable. allValue ".+" keeps "All" from
// expanding into a long regex; ".*" also matches series without the label.
func queryVariable(name, label, query, allValue string) variable {
	return variable{
		AllValue:   allValue,
		Current:    map[string]any{},
		Datasource: promDS(),
		Definition: query,
		Hide:       0,
		IncludeAll: true,
		Label:      label,
		Multi:      true,
		Name:       name,
		Options:    []any{},
		Query:      variableQuery{QryType: 1, Query: query, RefID: "PrometheusVariableQueryEditor-VariableQuery"},
		Refresh:    2,
		Regex:      "",
		Sort:       1,
		Type:       "query",
	}
}

// newDashboard starts a dashboard with the common variables and links.
func newDashboard(slug, title, description string) *dashboard {
	return &dashboard{
		Annotations:   map[string]any{"list": []any{}},
		Description:   description,
		Editable:      true,
		GraphTooltip:  1,
		Links:         []link{{AsDropdown: true, Icon: "external link", IncludeVars: true, KeepTime: true, Tags: []string{"tcpstate"}, Title: "tcpstate", Type: "dashboards"}},
		Refresh:       "30s",
		SchemaVersion: 39,
		Tags:          []string{"tcpstate"},
		Time:          map[string]string{"from": "now-6h", "to": "now"},
		Timepicker:    map[string]any{},
		Timezone:      "browser",
		Title:         title,
		UID:           "tcpstate-" + slug,
		Version:       1,
		layout:        &layout{},
	}
}

// build finalizes the dashboard: variables, then the laid-out panels.
func (d *dashboard) build() *dashboard {
	vars := []any{
		datasourceVariable(),
		queryVariable("job", "Job", "label_values(tcpstate_build_info, job)", ".+"),
		queryVariable("instance", "Instance", `label_values(tcpstate_build_info{job=~"$job"}, instance)`, ".+"),
	}
	for _, v := range d.extraVars {
		vars = append(vars, v)
	}
	d.Templating = map[string][]any{"list": vars}
	d.Panels = d.layout.panels
	return d
}

// checkSlug guards the generator against typos in uids.
func checkSlug(slug string) error {
	if slug == "" || strings.Trim(slug, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		return fmt.Errorf("bad dashboard slug %q", slug)
	}
	return nil
}
