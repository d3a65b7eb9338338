"""Accuracy (label accuracy): the PyTorch example as shipped, 2 Python
workers x 2 shards under BSP for the example's default epochs, reaches
>= 0.90 test accuracy on Fashion-MNIST, and ps-launch's job summary counts
every step of both workers. About 2 minutes on 2 cores. Skipped (77)
without python3-torch or the data."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import pstest

try:
    import torch  # noqa: F401
except ImportError:
    print("python3-torch is not installed: skipped")
    sys.exit(77)
if not os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"):
    print("dataset-fashion-mnist is not installed: skipped")
    sys.exit(77)

EXAMPLE = os.path.join(pstest.SRC, "examples", "torch_fashion_cnn.py")
# the example's defaults, which this test is about: 5 epochs of global
# batches of 2 x 32 over the 60000 training images
EPOCHS, GLOBAL_BATCH, TRAIN = 5, 64, 60000
LAUNCH_TIMEOUT_S = 600


class AccuracyTest(unittest.TestCase):
    def test_cnn_reaches_90_percent(self):
        work = tempfile.mkdtemp(prefix="ps-acc.")
        self.addCleanup(shutil.rmtree, work, True)
        env = dict(os.environ, PYTHONPATH=os.path.join(pstest.SRC, "python"),
                   PYTHONDONTWRITEBYTECODE="1")
        out, log = os.path.join(work, "out"), os.path.join(work, "log")
        # ps-launch's own deadline stops the job (and says so on stderr);
        # ours only guards against ps-launch itself hanging
        with open(out, "w") as o, open(log, "w") as e:
            rc = subprocess.call([os.path.join(pstest.BIN, "ps-launch"), "--servers", "2",
                                  "--workers", "2", "--timeout", str(LAUNCH_TIMEOUT_S),
                                  "--worker-command", "/usr/bin/python3 " + EXAMPLE],
                                 stdout=o, stderr=e, env=env, timeout=LAUNCH_TIMEOUT_S + 60)
        text = open(out).read()
        self.assertEqual(rc, 0, open(log).read()[-3000:])
        events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        evals = [ev for ev in events if ev["event"] == "eval"]
        done = [ev for ev in events if ev["event"] == "done"]
        for ev in evals:
            print("epoch %.0f: test accuracy %.4f (%.0f s of training)"
                  % (ev["epoch"], ev["test_accuracy"], ev["train_s"]))
        # the workers' own done lines are folded into ps-launch's one summary
        self.assertEqual(len(done), 1, text[-2000:])
        summary = done[0]
        print("job summary:", json.dumps(summary))
        steps = EPOCHS * (TRAIN // GLOBAL_BATCH)
        self.assertEqual([ev["steps"] for ev in evals],
                         [e * (TRAIN // GLOBAL_BATCH) for e in range(1, EPOCHS + 1)])
        self.assertEqual(summary["workers"], 2)
        self.assertEqual(summary["steps"], steps)
        self.assertEqual(summary["samples"], steps * GLOBAL_BATCH)
        self.assertEqual(summary["lost_workers"], [])
        self.assertGreater(summary["bytes_sent"], 0)
        # the summary's accuracy is rank 0's, of the final model: that of
        # the last epoch's evaluation
        self.assertAlmostEqual(summary["test_accuracy"], evals[-1]["test_accuracy"], places=6)
        self.assertGreaterEqual(summary["test_accuracy"], 0.90)


if __name__ == "__main__":
    unittest.main(verbosity=2)
