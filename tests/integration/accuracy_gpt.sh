# Done-when: the example GPT (deploy/examples/text-gpt.conf: 4 layers, 4
# heads, 128 wide, block 128, 3000 AdamW steps on the fortunes), 2 servers x
# 2 workers, predicts the held-out tenth of the corpus in fewer bits per
# byte than the best n-gram byte model counted on the same training part
# (interpolated absolute discounting, orders 5 and 6: 2.47 and 2.45 here),
# and ps-generate's sample from the exported model looks like English
# text: printable bytes, words separated by spaces. (That the loss matches
# PyTorch's for the same model and data order is bench/run_nets_vs_torch.sh.)
. "$(dirname "$0")/lib.sh"
timeout 3500 "$BIN/ps-launch" --servers 2 --workers 2 \
    --config "$SRC/deploy/examples/text-gpt.conf" --set progress_every_s=0 \
    --save-model "$WORK/model" >"$WORK/out" 2>"$WORK/launch.log" || fail "ps-launch exited $?"
grep '"event":"eval"' "$WORK/out" | "$PY" -c '
import json, sys
for l in sys.stdin:
    e = json.loads(l)
    print("step %d: val loss %.4f, %.3f bits per byte, %.0f s" % (e["steps"], e["val_loss"], e["val_bpb"], e["wall_s"]))'
bpb=$(json "$WORK/out" val_bpb)
grep -o "worker [0-9]: peak RSS [0-9.]* MB" "$WORK/launch.log" || fail "no peak RSS logged"
"$BIN/ps-generate" --model "$WORK/model" --prompt "The " --length 400 --seed 1 >"$WORK/sample" \
    || fail "ps-generate exited $?"
echo "---- sample (seed 1, temperature 0.8)"
cat "$WORK/sample"
echo "----"
"$PY" - "$WORK/sample" <<'PYEOF' || fail "the sample does not look like text"
import sys
s = open(sys.argv[1], "rb").read()
printable = sum(32 <= b < 127 or b in (9, 10) for b in s) / len(s)
words = s.split()
print(f"{printable:.3f} of the bytes printable, {len(words)} words, mean length {sum(map(len, words)) / len(words):.1f}")
assert printable >= 0.97 and 2 <= sum(map(len, words)) / len(words) <= 9
PYEOF
corpus=$(awk '$1 == "train_data" {print $2}' "$SRC/deploy/examples/text-gpt.conf")
frac=$(awk '$1 == "val_fraction" {print $2}' "$SRC/deploy/examples/text-gpt.conf")
ngram5=$("$PY" "$SRC/tests/integration/ngram_bpb.py" "$corpus" "$frac" 5)
ngram6=$("$PY" "$SRC/tests/integration/ngram_bpb.py" "$corpus" "$frac" 6)
echo "n-gram baselines: order 5 $ngram5, order 6 $ngram6 bits per byte; ps $bpb"
check "$bpb < $ngram5 and $bpb < $ngram6"
pass "gpt val_bpb $bpb, below the n-gram baselines ($ngram5, $ngram6)"
