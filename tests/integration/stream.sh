# Streamed, partitioned LIBSVM input (stream yes, docs/data.md):
# 1. BSP exactness from partitions (the example's FTRL, which is not
#    linear in the gradient): N workers with batch b train the model
#    one worker reading all N partitions with batch N*b trains (50 steps,
#    the rows of every key compared: max abs difference <= 1e-5), for byte
#    ranges of one file and for files; with uneven files (one ends first and
#    sends DONE) the job ends and still equals the one reader; another seed
#    gives another model (the comparison can fail).
# 2. Bounded memory and each worker reads only its half: 2 workers x 2
#    shards on about 50 MB; each worker's peak RSS (getrusage = VmHWM)
#    stays under 100 MB and its /proc/self/io rchar is about half the file
#    (ASan's quarantine is made small below; ThreadSanitizer's shadow memory
#    alone passes 100 MB, so this test is not labelled threads: the reader
#    thread's TSan run is unit_stream).
# 3. A bad line in the second half fails the worker reading it, naming the
#    file and byte offset.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
# Under AddressSanitizer freed blocks sit in its 256 MB quarantine and count
# as RSS; keep it small so the RSS bound measures the worker, not ASan.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4"
CONF="$SRC/deploy/examples/click-lr.conf"
"$BIN/ps-clickgen" --rows 40000 --test_rows 1000 --out train.svm --test_out test.svm \
    --truth truth.json > gen.log || fail "ps-clickgen failed"
mkdir parts uneven
split -n l/4 -d --additional-suffix=.svm train.svm parts/part-
head -n 3000 train.svm > uneven/a.svm
tail -n 5000 train.svm > uneven/b.svm

run() { # name workers batch train_data [--set ...]: 2 shards, BSP, rows of train's keys saved
    local name=$1 n=$2 b=$3 data=$4; shift 4
    timeout -k 10 $((240 * TIME_SCALE)) "$BIN/ps-launch" --servers 2 --workers "$n" --config "$CONF" \
        --set stream=yes --set train_data="$data" --set test_data="$WORK/train.svm" \
        --set batch_size="$b" --set eval_every=0 --set epochs=2 "$@" --set save_model="$WORK/$name" \
        >"$WORK/$name.out" 2>"$WORK/$name.log" || fail "$name: ps-launch exited $?"
}
rows_diff() { sparse_rows_diff "$WORK/$1" "$WORK/$2"; } # A B: runs of this test
run ranges2 2 64 train.svm --set max_steps=50
run ranges1 1 128 train.svm --set max_steps=50 --set partitions=2
run files4 4 32 "parts/part-*.svm" --set max_steps=50
run files2 2 64 "parts/part-*.svm" --set max_steps=50
run files1 1 128 "$WORK/parts" --set max_steps=50
run seed2 2 64 train.svm --set max_steps=50 --set seed=2
for pair in "ranges2 ranges1" "files4 files1" "files2 files1"; do
    set -- $pair
    d=$(rows_diff "$1" "$2") || fail "$1 vs $2: rows not comparable"
    check "$d <= 1e-5"
    pass "$1 == $2 after 50 steps: max abs difference $d"
done
d=$(rows_diff ranges2 seed2) || fail "seed2: rows not comparable"
check "$d > 1e-3"
pass "another shuffle seed gives another model (max abs difference $d)"

# uneven files: 3000 and 5000 samples, batch 50: 2 x 60 and 2 x 100 steps;
# worker 0 is done at 120 and the barrier goes on without it
run uneven2 2 50 "uneven/*.svm"
run uneven1 1 100 "uneven/*.svm"
# rank 0's summary: its own 120 steps; the shards' clock: the job's 200
check "$(json uneven2.out steps) == 120 and $(json uneven1.out steps) == 200"
check "$(json uneven1.out samples) == 16000"
grep -q "said BYE at clock 200" uneven2.log || fail "uneven2: the job did not end at clock 200"
d=$(rows_diff uneven2 uneven1) || fail "uneven: rows not comparable"
check "$d <= 1e-5"
pass "uneven partitions: 2 workers (one done at step 120) == 1 reader, 200 steps: $d"

# 2. about 50 MB, 2 workers x 2 shards, each worker on its own
"$BIN/ps-clickgen" --rows 720000 --test_rows 1000 --seed 5 --out big.svm --test_out bigtest.svm \
    --truth bigtruth.json > biggen.log || fail "ps-clickgen (big) failed"
size=$(stat -c %s big.svm)
start_server s0 0 2
start_server s1 1 2
pids=()
for r in 0 1; do
    timeout -k 10 $((240 * TIME_SCALE)) "$BIN/ps-worker" --servers "$EP_s0,$EP_s1" --rank $r --world 2 \
        --config "$CONF" --stream yes --train_data big.svm --test_data "" --epochs 1 \
        --job big > big$r.out 2> big$r.log &
    pids+=($!)
    STARTED_PIDS+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a worker of the 50 MB job failed"; done
for r in 0 1; do
    rss=$(json big$r.out peak_rss_bytes)
    rchar=$(json big$r.out io_rchar)
    data=$(json big$r.out data_bytes)
    check "$rss < 100e6"
    check "abs($data - $size / 2) < 0.01 * $size"
    check "abs($rchar - $size / 2) < 0.02 * $size"
    pass "worker $r of 2 on $size bytes: peak RSS $((rss / 1000000)) MB, read $data data bytes, rchar $rchar"
done

# 3. a bad line in the second half: worker 1 names file and byte, exits 65
line=360000
head -n $line big.svm > bad.svm
at=$(stat -c %s bad.svm)
echo "1 17:1 oops" >> bad.svm
tail -n 1000 big.svm >> bad.svm
rc=0
timeout -k 10 $((60 * TIME_SCALE)) "$BIN/ps-worker" --servers "$EP_s0,$EP_s1" --rank 1 --world 2 --config "$CONF" \
    --stream yes --train_data bad.svm --test_data "" --max_staleness -1 --job bad \
    > bad.out 2> bad.log || rc=$?
check "$rc == 65"
grep -q "bad.svm: byte $at: feature 'oops' is not INDEX:VALUE" bad.log ||
    fail "no file and byte offset: $(tail -3 bad.log)"
pass "a bad line fails the worker: $(grep -o 'bad.svm: byte.*' bad.log | head -1)"
