#!/bin/sh
# The char-LM runs of docs/regularisation.md, from the repository's root: two queues of
# one-thread runs side by side (each writes its JSON here), then the table and the plot.
set -e
D=benchmarks/results/2026-11-26-regularisation-char-lm
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's lstmx
run() {  # name, then char_lm.py's option flags
    name=$1; shift
    python examples/char_lm.py --hidden 256 --batch 16 --seq-len 64 \
        --max-train-chars 60000 --steps 1500 --eval-every 100 --threads 1 --seed 0 \
        --sample-chars 200 --no-progress --out "examples/output/regularisation/$name" \
        --json "$D/$name.json" "$@" > "$D/$name.log" 2>&1
}
(run plain; run zoneout --zoneout 0.5 0.05; run 2-layers --layers 2) &
(run recurrent-dropout --recurrent-dropout 0.25; run layer-norm --layer-norm;
 run 2-layers+dropout --layers 2 --dropout 0.25) &
wait
python $D/summarise.py
