# Sourced by a device call's script (kept as run.sh in its benchmarks/results folder): rows of gpu_sweep.sh in
# streams of GPUs side by side (CUDA_VISIBLE_DEVICES per stream), within one time budget, and the call's summary.
# Before sourcing: W (work folder), END (seconds the call may take). Each row writes $W/DIR/NAME.json (a bench record).
T0=$SECONDS
row() {  # STREAM DIR PRESET SEQ TP GB NAME TIMEOUT EXTRA   (env ROOT: another tree to run; WARMUP, STEPS, PROFILE)
  local s=$1 d=$2 preset=$3 seq=$4 tp=$5 gb=$6 name=$7 t=$8 extra=$9
  [ $((SECONDS - T0 + t)) -gt $END ] && { echo "[$s/$d skipped: no time left]"; return; }
  (cd ${ROOT:-$PWD} && OUT=$W/$d TP=$tp GB=$gb EXTRA="$extra" timeout -k 5 $t \
    bash benchmarks/gpu_sweep.sh $preset $seq $name > $W/$d.sweep.log 2>&1)
  grep -v "^name" $W/$d.sweep.log | tail -1; grep -m1 -o "Error.\{0,300\}" $W/$d/$name.log
  pkill -9 -f "$W/$d/" 2>/dev/null; sleep 2; echo "[$s/$d done at $((SECONDS - T0)) s]"
}
summarize() {  # OUT: sweep.json (every record, keyed DIR/NAME), logs.txt, and a table of the rows
  python3 - $W $1 <<'PY'
import json, pathlib, sys
w, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rows = {f"{d.name}/{p.stem}": json.loads(p.read_text()) for d in w.iterdir() if d.is_dir() for p in d.glob("*.json")}
rows = {k: r for k, r in rows.items() if "step_time_s_median" in r}  # bench records only (not a train run's files)
(out / "sweep.json").write_text(json.dumps(rows, indent=1))
(out / "logs.txt").write_text("\n".join(f"==== {p}\n{p.read_text()[-6000:]}" for p in sorted(w.rglob("*.log"))))
for k, r in sorted(rows.items()):
    p = r.get("profile") or {}
    extra = f" busy {p['gpu_busy_ms'] / p['wall_ms']:.0%} exposed comm {p['exposed_comm_ms']:.1f} ms" if "wall_ms" in p else ""
    print(f"{k:44} mb {r['micro_batch_size']} {r['step_time_s_median']:7.3f} s {r['tokens_per_s_per_device']:8.0f} "
          f"tok/s/dev {r['mfu']:6.1%} {r['peak_mem_gib']:5.1f} GiB{extra}")
PY
}
