# Streamed, partitioned dense input (stream yes with data_format idx, csv
# and records; docs/data.md), on 2000 Fashion-MNIST images:
# 1. BSP exactness from partitions, the demo's MLP (SGD, as bsp_exact.sh):
#    2 workers with batch 32, each streaming its record range of a gzip IDX
#    file, train the model one worker reading both ranges with batch 64
#    trains (50 steps, past the end of a pass; every table compared with
#    NumPy: max abs difference <= 1e-5); another seed differs (the
#    comparison can fail). ps-convert's records of the same IDX (one file,
#    the same record ranges) train the same model bit for bit. CSV byte
#    ranges: 2 workers == 1 (logistic regression on ps-datagen data).
#    evals_per_epoch works where the epoch's length is known (records),
#    and a records file is a test set too. Sparse records (ps-convert of
#    LIBSVM) train the LIBSVM's sparse LR exactly. Uneven partitions: the
#    worker whose partitions end first sends DONE, the job goes on.
# 2. Each worker streams its half: every epoch line of both workers has
#    reader_wait_s; the done line's data_bytes is exactly its records'
#    bytes, epoch after epoch.
# 3. A damaged record in worker 1's half fails it (exit 65) naming the
#    file, the record and its byte; what a streamed job cannot do is
#    refused naming the option.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
CONF="$SRC/deploy/examples/fashion-mlp.conf"
"$PY" - "$FM" <<'PYEOF' || fail "cannot cut the Fashion-MNIST subset"
import gzip, sys
fm = sys.argv[1]
for name, head, size in (("train-images-idx3-ubyte", 16, 784), ("train-labels-idx1-ubyte", 8, 1)):
    raw = gzip.open(f"{fm}/{name}.gz").read()
    hdr = bytearray(raw[:head])
    hdr[4:8] = (2000).to_bytes(4, "big")
    gzip.open(f"{name.split('-')[1]}.gz", "wb").write(bytes(hdr) + raw[head:head + 2000 * size])
PYEOF
"$BIN/ps-convert" --from idx --input images.gz --labels labels.gz --out all.rec > convert.json \
    || fail "ps-convert failed"
check "$(cut -c1-200 convert.json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["records"])') == 2000"

run() { # name workers batch [--set ...]: 2 shards, BSP, SGD, 50 steps, saved
    local name=$1 n=$2 b=$3; shift 3
    timeout -k 10 $((120 * TIME_SCALE)) "$BIN/ps-launch" --servers 2 --workers "$n" --config "$CONF" \
        --set stream=yes --set train_data="$WORK/images.gz" --set train_labels="$WORK/labels.gz" \
        --set test_data= --set test_labels= --set optimizer=sgd --set lr=0.05 \
        --set shuffle_window=300 --set max_steps=50 \
        --set batch_size="$b" --set eval_every=0 "$@" --save-model "$WORK/$name" \
        >"$WORK/$name.out" 2>"$WORK/$name.log" || fail "$name: ps-launch exited $?"
}
diff_models() { # A B: max abs difference of two saved dense models
    "$PY" - "$WORK/$1" "$WORK/$2" <<'PYEOF'
import json, sys, numpy as np
a, b = sys.argv[1], sys.argv[2]
meta = json.load(open(f"{a}/model.json"))
assert meta["tables"], "no tables"
d = max(float(np.abs(np.load(f"{a}/{t['file']}") - np.load(f"{b}/{t['file']}")).max())
        for t in meta["tables"])
print(d)
PYEOF
}
run ranges2 2 32
run ranges1 1 64 --set partitions=2
run seed2 2 32 --set seed=2
run records2 2 32 --set data_format=records --set train_data="$WORK/all.rec" --set train_labels=
d=$(diff_models ranges2 ranges1) || fail "models not comparable"
check "$d <= 1e-5"
pass "IDX gzip: 2 workers x batch 32 == 1 worker reading both ranges x 64 after 50 steps: $d"
d=$(diff_models ranges2 seed2) || fail "seed2: models not comparable"
check "$d > 1e-3"
pass "another shuffle seed gives another model ($d)"
models_equal "$WORK/ranges2" "$WORK/records2" > /dev/null || fail "records differ from their IDX"
pass "ps-convert's records train the IDX's model bit for bit"

# uneven: 3 record ranges for 2 workers: worker 0 reads 2 (16 + 16 of its
# batch of 32: 42 steps), worker 1 one (32: 21 steps), then sends DONE and
# the BSP barrier goes on without it to the job's 42
run uneven 2 32 --set partitions=3 --set max_steps=0 --set epochs=1
grep -q "said BYE at clock 42" uneven.log || fail "uneven: the job did not end at clock 42"
check "$(json uneven.out steps) == 42"
pass "uneven partitions: worker 1 done at step 21, the job ends at 42"

# evals_per_epoch where the epoch's length is known (records): 1 worker,
# batch 50, 40 steps an epoch, 4 evaluations on a records test set
timeout -k 10 $((120 * TIME_SCALE)) "$BIN/ps-launch" --servers 1 --workers 1 --config "$CONF" \
    --set stream=yes --set data_format=records --set train_data="$WORK/all.rec" \
    --set train_labels= --set test_data="$WORK/all.rec" --set test_labels= --set epochs=1 \
    --set batch_size=50 --set evals_per_epoch=4 > evals.out 2> evals.log || fail "evals: ps-launch exited $?"
check "$(grep -c '"event":"eval"' evals.out) == 4"
check "$(json evals.out test_accuracy) > 0.5"
pass "evals_per_epoch 4 on a streamed records job: 4 evaluations, test accuracy $(json evals.out test_accuracy)"

# CSV byte ranges: logistic regression (bce: no class count needed)
"$BIN/ps-datagen" --kind binary --rows 3000 --test_rows 0 --out bin.csv > /dev/null
for w in 2 1; do
    timeout -k 10 $((120 * TIME_SCALE)) "$BIN/ps-launch" --servers 2 --workers $w \
        --config "$SRC/deploy/examples/logistic-regression.conf" --set stream=yes \
        --set train_data="$WORK/bin.csv" --set test_data= --set standardize=no --set partitions=2 \
        --set batch_size=$((64 / w)) --set max_steps=50 --set eval_every=0 \
        --save-model "$WORK/csv$w" > csv$w.out 2> csv$w.log || fail "csv$w: ps-launch exited $?"
done
d=$(diff_models csv2 csv1) || fail "csv models not comparable"
check "$d <= 1e-5"
pass "CSV byte ranges: 2 workers x 32 == 1 worker x 64 after 50 steps: $d"

# sparse records: ps-convert's records of a LIBSVM file train the LIBSVM's
# model (1 worker, both whole: the same samples in the same batches)
"$BIN/ps-clickgen" --rows 6000 --test_rows 500 --out click.svm --test_out clicktest.svm \
    --truth truth.json > /dev/null || fail "ps-clickgen failed"
"$BIN/ps-convert" --from libsvm --input click.svm --out click.rec > /dev/null || fail "convert"
"$BIN/ps-convert" --from libsvm --input clicktest.svm --out clicktest.rec > /dev/null || fail "convert"
for f in svm rec; do
    fmt=libsvm; [ $f = rec ] && fmt=records
    timeout -k 10 $((120 * TIME_SCALE)) "$BIN/ps-launch" --servers 2 --workers 1 \
        --config "$SRC/deploy/examples/click-lr.conf" --set stream=yes --set data_format=$fmt \
        --set train_data="$WORK/click.$f" --set test_data="$WORK/clicktest.$f" --set epochs=2 \
        --set eval_every=0 --set save_model="$WORK/click_$f" > click_$f.out 2> click_$f.log ||
        fail "click $f: ps-launch exited $?"
done
d=$(sparse_rows_diff "$WORK/click_svm" "$WORK/click_rec") || fail "sparse rows not comparable"
check "$d == 0"
check "$(json click_svm.out test_auc) == $(json click_rec.out test_auc)"
pass "sparse records train the LIBSVM's model exactly (test AUC $(json click_rec.out test_auc))"

# 2. two workers on their halves of the records, 2 epochs
start_server s0 0 2
start_server s1 1 2
pids=()
for r in 0 1; do
    timeout -k 10 $((120 * TIME_SCALE)) "$BIN/ps-worker" --servers "$EP_s0,$EP_s1" --rank $r \
        --world 2 --config "$CONF" --stream yes --data_format records --train_data all.rec \
        --train_labels "" --test_data "" --test_labels "" --epochs 2 --job halves \
        > half$r.out 2> half$r.log &
    pids+=($!)
    STARTED_PIDS+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a worker of the 2-epoch job failed"; done
rb=$((4 + 784 + 4))
for r in 0 1; do
    n=$(grep -c '"event":"epoch"' half$r.out || true)
    w=$(grep '"event":"epoch"' half$r.out | grep -c '"reader_wait_s"' || true)
    check "$n == 2 and $w == 2"
    data=$(json half$r.out data_bytes)
    check "$data == 2 * 1000 * $rb"
    grep -q "epoch 2/2 .* s for data" half$r.log || fail "worker $r logged no reader wait"
    pass "worker $r: 2 epoch lines with reader_wait_s; read $data bytes (2 x its 1000 records)"
done

# 3. a damaged record in worker 1's half: it fails, naming it
cp all.rec bad.rec
at=$((64 + 1500 * rb))
printf '\x5a' | dd of=bad.rec bs=1 seek=$((at + 9)) conv=notrunc status=none
rc=0
timeout -k 10 $((60 * TIME_SCALE)) "$BIN/ps-worker" --servers "$EP_s0,$EP_s1" --rank 1 --world 2 \
    --config "$CONF" --stream yes --data_format records --train_data bad.rec --train_labels "" \
    --test_data "" --test_labels "" --max_staleness -1 --job bad > bad.out 2> bad.log || rc=$?
check "$rc == 65"
grep -q "bad.rec: record 1500 (byte $at): checksum mismatch" bad.log ||
    fail "no record and byte: $(tail -3 bad.log)"
pass "a damaged record fails the worker: $(grep -o 'bad.rec: record.*' bad.log | head -1)"

refused() { # pattern flags...: ps-worker refuses the config (exit 78) naming it
    local want=$1; shift
    rc=0
    "$BIN/ps-worker" --servers "$EP_s0" --config "$CONF" --stream yes "$@" > /dev/null \
        2> refused.log || rc=$?
    check "$rc == 78"
    grep -q -- "$want" refused.log || fail "not refused with '$want': $(cat refused.log)"
}
refused "standardize: needs the whole training set" --standardize yes
refused "val_fraction: a streamed job has no validation split" --val_fraction 0.1
refused "classes: a streamed CSV job" --data_format csv --train_data bin.csv --train_labels "" \
    --lr_schedule constant
refused "lr_schedule cosine: needs the job's step count" --data_format csv --train_data bin.csv \
    --train_labels "" --classes 2
refused "data_format records: read with stream yes" --stream no --data_format records
pass "streamed jobs refuse standardize, val_fraction, an unknown class count or step count"
