#!/usr/bin/env bash
# The measurements that need a GPU machine (one GPU, 16 CPU cores, JAX with CUDA, no TensorFlow,
# no Ray, no internet), in one run:
#   1. the real placement check on the GPU + host CPU pair (docs/benchmarks/placement.md);
#   2. the same check on 4 virtual CPU devices of a 16-core host;
#   3. GPU packing: nb201_cell trials one at a time against packed (docs/benchmarks/gpu_packing.md),
#      in what is left of DEADLINE seconds (default 540) from the start.
# Keras, optree, namex and pydantic travel as wheels in .whl/ (ignored by git), fetched here with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#       keras==3.15.1 namex optree pydantic pydantic-core pydantic-settings annotated-types \
#       typing-inspection python-dotenv
# (the versions this project's venv has; the GPU machine's Python was 3.12);
# results go to $OUT (default ./gpu-results). Each part has its own time limit, so one that
# fails or hangs does not cost the others.
set -u
DEADLINE=${DEADLINE:-540}
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2

{
    date -u +%Y-%m-%dT%H:%MZ
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    echo "cpu cores: $(nproc)"
    python3 -c "import jax, keras; print('jax', jax.__version__, 'keras', keras.__version__, jax.devices())"
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

expert='{"source_embedding":0,"encoder0":0,"target_embedding":0,"decoder0":0,"encoder1":1,"decoder1":1,"attention":2,"attended":3,"softmax":3}'
echo "== 1. placement check, GPU + host CPU"
for model in ${PAIR_MODELS-mlp cnn lstm nmt towers}; do
    timeout 60 python3 -m l2l.placement.realstep --model "$model" --hardware gpu+cpu --steps 20 --json \
        --placements '{"gpu":"all:0","cpu":"all:1","round_robin":"round_robin","contiguous":"contiguous"}' \
        >>"$OUT/realstep_gpu_cpu.jsonl" 2>>"$OUT/realstep.log"
    echo "$model exit $?"
done

echo "== 2. placement check, 4 virtual CPU devices"
for model in ${CPU4_MODELS-mlp cnn lstm nmt towers}; do
    placements='{"single":"single","round_robin":"round_robin","contiguous":"contiguous"}'
    [ "$model" = nmt ] && placements="${placements%\}},\"expert\":$expert}"
    timeout 60 python3 -m l2l.placement.realstep --model "$model" --devices 4 --steps 20 --json \
        --placements "$placements" >>"$OUT/realstep_cpu4.jsonl" 2>>"$OUT/realstep.log"
    echo "$model exit $?"
done

echo "== 3. GPU packing, with the time that is left"
timeout "$((DEADLINE - SECONDS))" python3 -m l2l.bench.gpu_packing --trials "${PACKING_TRIALS:-16}" \
    --epochs "${PACKING_EPOCHS:-1}" --device-gb "${DEVICE_GB:-141}" --out "$OUT/gpu_packing.json" 2>"$OUT/gpu_packing.log"
echo "exit $?"

