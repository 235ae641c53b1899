# Sourced by gpu_smoke.sh and gpu_archs.sh after they set OUT and WORK: the environment their runs share, an empty
# $WORK (logs/, runs/), the carried wheels installed where the image lacks `datasets`, and the versions logged.
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
