"""The trainer benchmark's own parts: the dataset it trains on and what it reads from train.log."""

import pytest

from bench.trainer_throughput import benchmark_dataset, checkpoint_share, read_train_log
from train.sources import CELEBA, TRAIN, VALIDATION, open_source

LOG = """\
2026-12-02 10:00:00,100 INFO Using the preprocessed cache /tmp/cache/celeba-256-0123
2026-12-02 10:00:30,250 INFO step 300: validation MSE 0.1254, PSNR 15.35 dB, …
2026-12-02 10:00:31,000 INFO Trained steps 10–300 at 8012.5 images/s
2026-12-02 10:00:31,100 INFO Model saved to runs/x
"""


def test_benchmark_dataset_is_celeba_read_by_the_trainer_and_made_once(tmp_path):
    folder = benchmark_dataset(tmp_path, images=120)
    source = open_source(folder)
    assert source.dataset == CELEBA and len(source.files) == 120
    assert {"Smiling", "Male"} <= set(source.attributes)
    assert (source.split == TRAIN).any() and (source.split == VALIDATION).any()
    made = (folder / "list_attr_celeba.txt").stat().st_mtime_ns
    assert benchmark_dataset(tmp_path, images=120) == folder
    assert (folder / "list_attr_celeba.txt").stat().st_mtime_ns == made
    assert [p.name for p in tmp_path.iterdir()] == [folder.name], "no staging folder left"


def test_checkpoint_share_is_one_checkpoint_in_a_default_interval():
    # 10,000 steps of 32 images at 3,200 images/s: 100 s of training, then a 1 s checkpoint
    assert checkpoint_share(1.0, rate=3200.0, batch_size=32) == pytest.approx(1 / 101)


def test_train_log_gives_the_trainers_figure_and_the_final_checkpoint_time():
    read = read_train_log(LOG)
    assert read == {"timed_steps": [10, 300], "img_per_s": 8012.5, "final_checkpoint_s": 0.75}


def test_train_log_without_the_trainers_figure_is_refused_with_a_reason():
    with pytest.raises(RuntimeError, match="no 'Trained steps"):
        read_train_log(LOG.replace("Trained steps 10–300", "Trained"))
    with pytest.raises(RuntimeError, match="built its cache"):
        read_train_log(LOG.replace("Using the preprocessed cache", "Preprocessed"))
