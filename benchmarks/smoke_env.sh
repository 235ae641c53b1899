# Sourced by gpu_smoke.sh and gpu_archs.sh after they set OUT and WORK: the environment their runs share, an empty
# $WORK (logs/, runs/), the carried wheels installed where the image lacks `datasets`, the versions logged, and
# `step`, which runs each of their commands.
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
CPU=${SMOKE_CPU:-0}
CHECKS=(python3 benchmarks/smoke_checks.py)
rm -rf "$WORK"; mkdir -p "$OUT" "$WORK/logs" "$WORK/runs"
if ! python3 -c 'import datasets' 2>/dev/null && ls .whl/*.whl > /dev/null 2>&1; then  # wheels carried to the GPU image
  PIP=(python3 -m pip install -q --no-deps --no-index)
  { "${PIP[@]}" .whl/*.whl || "${PIP[@]}" --break-system-packages .whl/*.whl; } > "$WORK/logs/install.log" 2>&1
fi
"${CHECKS[@]}" versions | tee "$WORK/logs/versions.log"

step() {  # NAME GPUS CMD...: run CMD seeing only GPUS (a comma list; CPU mode sees none) into logs/NAME.log
  local name=$1 gpus=$2 t0=$SECONDS rc; shift 2
  echo "\$ $*" > "$WORK/logs/$name.log"
  if [ "$CPU" = 1 ]; then "$@"; else CUDA_VISIBLE_DEVICES=$gpus "$@"; fi >> "$WORK/logs/$name.log" 2>&1
  rc=$?
  echo "exit $rc after $((SECONDS - t0)) s" | tee -a "$WORK/logs/$name.log" | sed "s/^/$name: /"
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >> "$WORK/steps.tsv"
  return $rc
}
