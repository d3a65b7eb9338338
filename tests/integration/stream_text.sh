# A streamed text corpus (stream yes with data_format text; docs/data.md),
# a small GPT (2 layers, width 64, block 64, dropout 0.1, SGD as in
# bsp_exact.sh, whose sums Adam's division would magnify, with the
# config's cosine schedule: the job's steps are known from the files'
# sizes):
# 1. BSP exactness from partitions: 2 workers with batch 4, each streaming
#    its file of a corpus directory, train the model one worker reading
#    both files with batch 8 trains (50 steps, past the end of a pass;
#    every table compared with NumPy: max abs difference <= 1e-5); the
#    same for 2 byte ranges of one file; another seed differs (the
#    comparison can fail). A test corpus (read whole) still evaluates.
# 2. Memory does not grow with the corpus: one worker streaming a 64 MB
#    corpus peaks within 16 MB of one streaming 1 MB, while reading the
#    64 MB corpus whole (stream no) peaks at least 48 MB higher.
# 3. A byte the model cannot embed fails the worker naming the file, the
#    window and the byte's offset; what a streamed text job cannot do is
#    refused naming the option.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
CONF="$SRC/deploy/examples/text-gpt.conf"
FORTUNES=/usr/share/games/fortunes/fortunes
[ -r "$FORTUNES" ] || fail "fortunes not installed ($FORTUNES)"
mkdir corpus
# Byte ranges of the corpus without a pipe: under pipefail, `tail | head -c`
# fails when tail writes again after head has what it needs and exits
# (SIGPIPE, 141: 1 run in 200 here, and the ASan stage of a fresh-machine
# check failed at this line in 0.01 s).
bytes_of() { # FILE SKIP COUNT: COUNT bytes of FILE after the first SKIP
    dd if="$1" bs=1 skip="$2" count="$3" status=none
}
bytes_of "$FORTUNES" 0 8000 > corpus/a # 124 windows of 65 bytes every 64: 31 steps of 4 a pass
bytes_of "$FORTUNES" 8000 8000 > corpus/b
cat corpus/a corpus/b > one.txt
bytes_of "$FORTUNES" 20000 6000 > test.txt

run() { # name workers batch [--set ...]: 2 shards, BSP, 50 steps, saved
    local name=$1 n=$2 b=$3; shift 3
    timeout -k 10 $((120 * TIME_SCALE)) "$BIN/ps-launch" --servers 2 --workers "$n" \
        --config "$CONF" --set stream=yes --set val_fraction=0 --set n_layer=2 \
        --set n_embd=64 --set n_head=4 --set block_size=64 --set dropout=0.1 \
        --set optimizer=sgd --set lr=0.05 --set weight_decay=0 --set warmup_steps=5 --set max_steps=50 --set eval_every=0 --set eval_every_steps=0 \
        --set progress_every_s=0 --set batch_size="$b" "$@" --save-model "$WORK/$name" \
        >"$WORK/$name.out" 2>"$WORK/$name.log" || fail "$name: ps-launch exited $?"
}
diff_models() { # A B: max abs difference of two saved models (50 steps each)
    "$PY" - "$WORK/$1" "$WORK/$2" <<'PYEOF'
import json, sys, numpy as np
a, b = sys.argv[1], sys.argv[2]
ma, mb = json.load(open(f"{a}/model.json")), json.load(open(f"{b}/model.json"))
assert ma["tables"] and ma["steps"] == mb["steps"] == 50, (ma["steps"], mb["steps"])
assert [t["name"] for t in ma["tables"]] == [t["name"] for t in mb["tables"]]
print(max(float(np.abs(np.load(f"{a}/{t['file']}") - np.load(f"{b}/{t['file']}")).max())
          for t in ma["tables"]))
PYEOF
}
run dir2 2 4 --set train_data="$WORK/corpus" --set test_data="$WORK/test.txt"
run dir1 1 8 --set train_data="$WORK/corpus" --set test_data="$WORK/test.txt"
run seed2 2 4 --set train_data="$WORK/corpus" --set test_data= --set seed=2
d=$(diff_models dir2 dir1) || fail "directory: models not comparable"
check "$d <= 1e-5"
pass "a directory of 2 files: 2 workers x batch 4 == 1 worker reading both x 8 after 50 steps: $d"
d=$(diff_models dir2 seed2) || fail "seed2: models not comparable"
check "$d > 1e-3"
pass "another shuffle seed gives another model ($d)"
grep -q "streaming 2 partitions" dir1.log || fail "dir1 did not stream both files"
bpb=$(json dir1.out test_bpb)
check "$bpb > 0 and $bpb < 8"
pass "the test corpus (read whole) evaluates: test_bpb $bpb"

run one2 2 4 --set train_data="$WORK/one.txt" --set test_data=
run one1 1 8 --set train_data="$WORK/one.txt" --set test_data= --set partitions=2
d=$(diff_models one2 one1) || fail "byte ranges: models not comparable"
check "$d <= 1e-5"
pass "2 byte ranges of one file: 2 workers x batch 4 == 1 worker x 8 after 50 steps: $d"

# 2. peak RSS against the corpus's size (one worker, 20 steps)
head -c 750000 /dev/urandom > random.bin # a file, not a pipe: head would SIGPIPE it
base64 -w 99 random.bin > small.txt       # 1 MB of text
for _ in $(seq 64); do cat small.txt; done > big.txt
rss_of() { # name train_data stream
    run "$1" 1 8 --set train_data="$WORK/$2" --set test_data= --set stream="$3" \
        --set max_steps=20 --set lr_schedule=constant
    json "$1.out" peak_rss_bytes
}
small=$(rss_of rss_small small.txt yes)
big=$(rss_of rss_big big.txt yes)
whole=$(rss_of rss_whole big.txt no)
check "$big < $small + 16e6"
check "$whole > $big + 48e6"
pass "peak RSS: streaming 1 MB $((small / 1000000)) MB, 64 MB $((big / 1000000)) MB; 64 MB read whole $((whole / 1000000)) MB"

# 3. a byte past the model's vocabulary (a spec embedding 128 tokens): the
# worker fails (exit 65) naming the file, the window, and the byte's offset
"$PY" -c "
b = bytearray(b'a' * 4000); b[1000] = 200; open('bad.txt', 'wb').write(b)"
rc=0
timeout -k 10 $((120 * TIME_SCALE)) "$BIN/ps-launch" --servers 1 --workers 1 --config "$CONF" \
    --set stream=yes --set val_fraction=0 --set model=net --set 'input=tokens(16)' \
    --set 'layers=embed(128, 16) dense(128) cross_entropy' --set train_data="$WORK/bad.txt" \
    --set test_data= --set max_steps=5 > bad.out 2> bad.log || rc=$?
check "$rc == 65"
want="bad.txt: window 62 (byte 992): byte 200 at offset 1000 is not below the vocabulary 128"
grep -q "$want" bad.log || fail "no file, window and byte: $(grep ' E ' bad.log | head -2)"
pass "a byte past the vocabulary fails the worker: $want"

# refusals (no servers needed: the config is checked first)
refused() { # pattern flags...: ps-worker refuses the config (exit 78) naming it
    local want=$1; shift
    rc=0
    "$BIN/ps-worker" --servers tcp://127.0.0.1:1 --config "$CONF" --stream yes \
        --train_data "$WORK/corpus" "$@" > /dev/null 2> refused.log || rc=$?
    check "$rc == 78"
    grep -q -- "$want" refused.log || fail "not refused with '$want': $(cat refused.log)"
}
refused "val_fraction: a streamed job has no validation split" --val_fraction 0.1
pass "a streamed text job refuses val_fraction"
