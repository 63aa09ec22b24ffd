// gitops-health rates Kubernetes objects the way three GitOps health checkers do, with their own code:
//
//   - kstatus: sigs.k8s.io/cli-utils status.Compute (what kstatus-based tools, Flux's default included, use);
//   - flux: Flux's CEL StatusEvaluator (github.com/fluxcd/pkg/runtime/cel) with a Kustomization's
//     healthCheckExprs (current, inProgress, failed);
//   - argocd: a health Lua script run by gopher-lua in the sandbox Argo CD's util/lua builds: unless
//     useOpenLibs is true only the package, base and table libraries are opened, plus a safe os subset
//     (time, date) reachable through require("os"); the object is the global obj; a script error, a
//     non-table result or an invalid status reads Unknown, as in the Argo CD UI.
//
// It reads one JSON document on stdin:
//
//	{"objects": [...], "lua": "<script>", "useOpenLibs": false,
//	 "flux": {"current": "<cel>", "inProgress": "<cel>", "failed": "<cel>"}}
//
// and writes a JSON array with one {"kstatus": {...}, "flux": {...}, "argocd": {...}} per object, each
// {"status": ..., "message": ...}.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/fluxcd/pkg/apis/kustomize"
	fluxcel "github.com/fluxcd/pkg/runtime/cel"
	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type request struct {
	Objects     []json.RawMessage                `json:"objects"`
	Lua         string                           `json:"lua"`
	UseOpenLibs bool                             `json:"useOpenLibs"`
	Flux        kustomize.HealthCheckExpressions `json:"flux"`
}

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

type rating struct {
	Kstatus verdict `json:"kstatus"`
	Flux    verdict `json:"flux"`
	ArgoCD  verdict `json:"argocd"`
}

// Argo CD's valid health statuses (gitops-engine health.HealthStatusCode); anything else reads Unknown.
var argoStatuses = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true, "Missing": true,
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gitops-health:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	var req request
	if err := json.NewDecoder(in).Decode(&req); err != nil {
		return fmt.Errorf("reading the request: %w", err)
	}
	evaluator, err := fluxcel.NewStatusEvaluator(&req.Flux)
	if err != nil {
		return fmt.Errorf("flux expressions: %w", err)
	}
	ratings := make([]rating, 0, len(req.Objects))
	for i, raw := range req.Objects {
		// The API machinery's decoder: integers become int64, as in a controller's cache.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			return fmt.Errorf("objects[%d]: %w", i, err)
		}
		ratings = append(ratings, rating{
			Kstatus: kstatusOf(u),
			Flux:    fluxOf(evaluator, u),
			ArgoCD:  argoOf(u.Object, req.Lua, req.UseOpenLibs),
		})
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(ratings)
}

func kstatusOf(u *unstructured.Unstructured) verdict {
	res, err := status.Compute(u)
	if err != nil {
		return verdict{Status: "Unknown", Message: err.Error()}
	}
	return verdict{Status: string(res.Status), Message: res.Message}
}

// fluxOf: an evaluation error is what Flux's generic status reader reports as Unknown (it keeps waiting).
func fluxOf(e *fluxcel.StatusEvaluator, u *unstructured.Unstructured) verdict {
	res, err := e.Evaluate(context.Background(), u)
	if err != nil {
		return verdict{Status: "Unknown", Message: err.Error()}
	}
	return verdict{Status: string(res.Status), Message: res.Message}
}

func argoOf(obj map[string]interface{}, script string, useOpenLibs bool) verdict {
	hs, err := argoHealth(obj, script, useOpenLibs)
	if err != nil {
		return verdict{Status: "Unknown", Message: err.Error()}
	}
	return hs
}

func argoHealth(obj map[string]interface{}, script string, useOpenLibs bool) (verdict, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !useOpenLibs})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		// Argo CD registers its safe os functions under the table library's name: os itself stays nil
		// unless the script calls require("os") (the preload below) or all libraries are open.
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true},
			lua.LString(lib.name)); err != nil {
			return verdict{}, err
		}
	}
	l.PreloadModule(lua.OsLibName, safeOsLoader)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return verdict{}, err
	}
	ret := l.Get(-1)
	table, ok := ret.(*lua.LTable)
	if !ok {
		return verdict{}, fmt.Errorf("expect table output from Lua script, not %s", ret.Type().String())
	}
	hs, err := healthFields(table)
	if err != nil {
		return verdict{}, err
	}
	if !argoStatuses[hs.Status] {
		return verdict{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return hs, nil
}

// healthFields reads {status, message} as Argo CD does after encoding the table to JSON: both must be strings.
func healthFields(t *lua.LTable) (verdict, error) {
	if t.Len() > 0 || isEmpty(t) { // luajson encodes these as a JSON array
		return verdict{}, errors.New("json: cannot unmarshal array into Go value of type health.HealthStatus")
	}
	var hs verdict
	for key, dst := range map[string]*string{"status": &hs.Status, "message": &hs.Message} {
		switch v := t.RawGetString(key).(type) {
		case *lua.LNilType:
		case lua.LString:
			*dst = string(v)
		default:
			return verdict{}, fmt.Errorf("json: cannot unmarshal %s into field HealthStatus.%s of type string",
				v.Type().String(), key)
		}
	}
	return hs, nil
}

func isEmpty(t *lua.LTable) bool {
	k, _ := t.Next(lua.LNil)
	return k == lua.LNil
}

// toLua converts a decoded object the way Argo CD's decodeValue does (numbers of any width become numbers).
func toLua(l *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case []interface{}:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(toLua(l, item))
		}
		return arr
	case map[string]interface{}:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), toLua(l, item))
		}
		return tbl
	}
	return lua.LNil
}

// The safe os subset Argo CD exposes to health scripts: time and date only.
var safeOsFuncs = map[string]lua.LGFunction{"time": osTime, "date": osDate}

func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.TabLibName, safeOsFuncs))
	return 1
}

func safeOsLoader(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), safeOsFuncs))
	return 1
}

func osTime(l *lua.LState) int {
	if l.GetTop() == 0 {
		l.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}
	t := l.CheckTable(1)
	field := func(name string, def int) int {
		if n, ok := t.RawGetString(name).(lua.LNumber); ok {
			return int(n)
		}
		return def
	}
	at := time.Date(field("year", -1), time.Month(field("month", -1)), field("day", -1), field("hour", 12),
		field("min", 0), field("sec", 0), 0, time.Local)
	l.Push(lua.LNumber(at.Unix()))
	return 1
}

// osDate supports "*t" (a table) and otherwise formats as RFC 3339; health scripts here do not use it.
func osDate(l *lua.LState) int {
	format := l.OptString(1, "%c")
	at := time.Now()
	if l.GetTop() > 1 {
		at = time.Unix(int64(l.CheckNumber(2)), 0)
	}
	if len(format) > 0 && format[0] == '!' {
		format, at = format[1:], at.UTC()
	}
	if format != "*t" {
		l.Push(lua.LString(at.Format(time.RFC3339)))
		return 1
	}
	t := l.NewTable()
	for name, v := range map[string]int{"year": at.Year(), "month": int(at.Month()), "day": at.Day(),
		"hour": at.Hour(), "min": at.Minute(), "sec": at.Second(), "yday": at.YearDay(),
		"wday": int(at.Weekday()) + 1} {
		t.RawSetString(name, lua.LNumber(v))
	}
	t.RawSetString("isdst", lua.LFalse)
	l.Push(t)
	return 1
}
