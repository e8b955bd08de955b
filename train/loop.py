"""One training run of a Fader Network, from the first batch to the exported model.

The run feeds batches to the step (`train.step`), evaluates, logs, checkpoints and exports.
"""

import logging
import math
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from copy import deepcopy
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

from fader.card import model_card
from fader.classifier import Classifier, ClassifierConfig
from fader.folder import SAMPLE_GRID_NAME, write_model_folder
from fader.model import WEIGHTS_NAME, FaderConfig, FaderNetwork, LatentDiscriminator
from train.checkpoint import (
    CHECKPOINT_NAME,
    checkpoint_contents,
    generator_states,
    load_checkpoint,
    module_state,
    read_checkpoint_info,
    write_checkpoint,
)
from train.config import (
    AUTHORS,
    LAST,
    RECONSTRUCTION,
    SWAP_ACCURACY,
    TrainConfig,
    lambda_schedule,
)
from train.critics import (
    CLASSIFIER,
    PATCH,
    ImageCritics,
    PatchDiscriminator,
    classifier_columns,
    classifier_config,
)
from train.cuda_graph import GraphedTrainingStep
from train.data import BatchStream, PreparedData, held_out_batches, resident_images
from train.distributed import ONE_PROCESS, Processes, gather_states, replicate, total
from train.metrics import evaluate, sample_grid
from train.sources import TRAIN, VALIDATION
from train.step import (
    Reconstruction,
    adam,
    autocast_dtype,
    training_layout,
    training_step,
    use_fast_cuda_math,
)
from train.writes import BackgroundWriter

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

log = logging.getLogger("train")


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is left untouched."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C or SIGTERM: a checkpoint was saved and the run can be resumed."""


WARMUP_STEPS = 5  # steps not counted in the throughput a run reports: allocator, autotuner, graph


def resolve_device(name: str, processes: Processes = ONE_PROCESS) -> torch.device:
    """`--device`'s value as a device this machine has, or a message saying what to pass.

    With several processes on CUDA, each takes the GPU of its LOCAL_RANK, as torchrun intends."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if processes.several and name.startswith("cuda"):
        if name != "cuda":
            raise ValueError(
                f"--device {name}: with torchrun each process uses the GPU of its LOCAL_RANK; "
                "pass --device cuda (or leave it out) and choose GPUs with CUDA_VISIBLE_DEVICES."
            )
        name = f"cuda:{processes.local_rank}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device is available here; use --device cpu.")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"--device {name!r} is not a device: use cpu, cuda or cuda:N.") from error
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s).")
    return device


def step_for_device(
    model: FaderNetwork,
    discriminator: LatentDiscriminator,
    optimizers: dict[str, torch.optim.Optimizer],
    clip: float,
    device: torch.device,
    critics: ImageCritics | None = None,
    authors_discriminator_step: bool = False,
    replicas: tuple[torch.nn.Module, torch.nn.Module] | None = None,
) -> Callable[..., dict[str, torch.Tensor]]:
    """`training_step` as `device` runs it fastest, taking (images, labels, λ_dis) and its
    keyword options: on CUDA in bf16 with TF32 and cuDNN's autotuner, replayed from a CUDA
    graph (`train.cuda_graph`); on CPU as it is.

    The authors' image-space critics and their discriminator step are run eagerly on CUDA: the
    graph has been checked bit-exact against eager steps (bench/cuda_graph_exactness.py) for
    the paper's step only, and theirs add whole networks, optimizers and a second batch to it.
    So is a step of several processes (`replicas`): DistributedDataParallel starts its gradient
    all-reduces from autograd hooks as the backward pass goes, which a replayed graph would
    have to record with NCCL's collectives inside, and that has not been verified.
    """
    use_fast_cuda_math(device)
    networks = (model, discriminator, optimizers)
    precision = autocast_dtype(device)
    options = {"critics": critics} if critics is not None else {}
    if replicas is not None:
        options["replicas"] = replicas
    if device.type == "cuda" and not options and not authors_discriminator_step:
        return GraphedTrainingStep(*networks, clip, precision)
    if device.type == "cuda":
        log.info(
            "Training steps run eagerly, not as a CUDA graph: the graph is verified for the "
            "paper's step in one process only, not with several processes, the "
            "patch/classifier discriminators or --lat-dis-step authors."
        )
    return lambda images, labels, lam, **extra: training_step(
        *networks, images, labels, lam, clip, precision, **options, **extra
    )


class StopOnSignal:
    """Turns Ctrl-C / SIGTERM into a flag checked between steps, so a step is never cut in half."""

    # torchrun passes a Ctrl-C on to its processes as SIGINT and, a millisecond later, SIGTERM:
    # one request. A second Ctrl-C after this long is the user insisting.
    SAME_REQUEST_S = 2.0

    def __init__(self) -> None:
        self.requested = False
        self.requested_at = 0.0
        self.previous = {}

    def __enter__(self) -> "StopOnSignal":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self.request)
        return self

    def request(self, signum: int, frame: object) -> None:
        now = time.monotonic()
        if not self.requested:
            self.requested, self.requested_at = True, now
        elif now - self.requested_at > self.SAME_REQUEST_S:  # asked again: stop at once
            raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def export_model(model: FaderNetwork, out: Path, grid: torch.Tensor | None) -> None:
    """Write the model folder into the run folder `out` (`fader.folder`: staged, moved in
    atomically, the checkpoint and logs kept), its card showing the last sample grid."""
    has_grid = grid is not None or (out / SAMPLE_GRID_NAME).is_file()
    card = model_card(model.config, str(out), SAMPLE_GRID_NAME if has_grid else None)
    write_model_folder(out, model, card, sample_grid=grid)


def exported_copy(config: FaderConfig, weights: dict[str, torch.Tensor]) -> FaderNetwork:
    """A model of `config` holding `weights` (host copies), for a thread to export while the
    model itself trains on. Built on the meta device: no weights are initialised only to be
    replaced."""
    with torch.device("meta"):
        copy = FaderNetwork(deepcopy(config))
    copy.load_state_dict(weights, assign=True)
    return copy.eval()


def host_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's weights copied to host memory, contiguous (as safetensors writes them)."""
    return {
        name: value.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
        for name, value in module.state_dict().items()
    }


# What each --select criterion reads from an evaluation's metrics, and whether higher is better.
CRITERIA = {SWAP_ACCURACY: ("swap_accuracy", True), RECONSTRUCTION: ("reconstruction_mse", False)}
LAST_FOLDER = "last"  # RUN/last/: the last step's model, when the run folder holds the best


def improves(score: float, best: dict | None, higher_is_better: bool) -> bool:
    """Whether `score` beats the best so far (a tie keeps the earlier, shorter-trained model)."""
    if not math.isfinite(score):
        return False
    if best is None:
        return True
    return score > best["score"] if higher_is_better else score < best["score"]


class Trainer:
    """The state of one run (networks, optimizers, data, logs) and what happens to it each step."""

    def __init__(
        self,
        model_config: FaderConfig,
        config: TrainConfig,
        data: PreparedData,
        out: Path,
        resume: bool = False,
        run_info: dict | None = None,
        push: Callable[[int], None] | None = None,
        push_every: int = 0,
        classifier: Classifier | None = None,
        classifier_discriminator: Classifier | None = None,
        processes: Processes = ONE_PROCESS,
        device: torch.device | None = None,
    ):
        """Build the networks, or restore them from `out`'s checkpoint when resuming.

        `run_info` (data paths, preset) is kept in the checkpoint only, so `--resume` can find
        the data again while the exported model carries no local paths. `push(step)` publishes
        the exported model every `push_every` steps (the final push is the caller's). With a
        `classifier`, each evaluation also measures swap accuracy. `classifier_discriminator`
        is where the classifier discriminator starts (`--clf-dis-reload`) instead of afresh.
        With several `processes` (`train.distributed`), each trains on its share of every
        batch; `push` is then given to process 0 only, `push_every` to all.
        """
        self.config, self.data, self.out, self.run_info = config, data, out, run_info or {}
        self.push, self.push_every, self.processes = push, push_every, processes
        # `python -m train` resolves the device once, before preprocessing, and passes it
        self.device = device or resolve_device(config.device, processes)
        self.classifier = classifier.to(self.device) if classifier is not None else None
        torch.manual_seed(config.seed)
        self.model = training_layout(FaderNetwork(model_config), self.device)
        self.discriminator = training_layout(LatentDiscriminator(model_config), self.device)
        self.modules = {"model": self.model, "discriminator": self.discriminator}
        self.optimizers = {
            "autoencoder": adam(self.model, config),
            "discriminator": adam(self.discriminator, config),
        }
        self.critics = self.build_critics(model_config, classifier_discriminator)
        if self.critics is not None:
            self.modules |= self.critics.networks()
            self.optimizers |= {n: adam(m, config) for n, m in self.critics.networks().items()}
        self.checkpoint = out / CHECKPOINT_NAME
        self.first_step = 0  # the step this process starts at: 0, or the checkpoint's on resume
        self.select_by = config.select_by(classifier is not None)
        # the evaluation whose model the run folder holds: {"by", "step", "score"}
        self.selected: dict | None = None
        if resume:
            saved = read_checkpoint_info(self.checkpoint)[1].get("selected")
            self.selected = saved if saved and saved["by"] == self.select_by else None
            self.first_step = load_checkpoint(
                self.checkpoint, self.modules, self.optimizers, self.device, processes.rank
            )
            for optimizer in self.optimizers.values():  # `--resume --lr …` must take effect:
                for group in optimizer.param_groups:  # the saved groups hold the old values
                    group["lr"], group["betas"] = config.lr, (config.beta1, 0.999)
                    group["capturable"] = self.device.type == "cuda"  # the run may change device
        elif processes.rank:  # the same initial weights in every process, their own dropout
            torch.manual_seed(config.seed + 1000 * processes.rank)
        replicas = (
            (
                replicate(Reconstruction(self.model), processes, self.device),
                replicate(self.discriminator, processes, self.device),
            )
            if processes.several
            else None
        )
        self.train_step = step_for_device(
            self.model,
            self.discriminator,
            self.optimizers,
            config.clip_grad_norm,
            self.device,
            self.critics,
            config.lat_dis_step == AUTHORS,
            replicas,
        )

        self.columns = data.attribute_columns(model_config.attributes)
        resident = resident_images(data, data.indices(TRAIN), self.device, processes.main)
        share = processes.share(config.batch_size)
        self.stream = BatchStream(
            data,
            data.indices(TRAIN),
            self.columns,
            config.batch_size,
            config.seed,
            config.flip,
            share,
            resident,
        )
        # The authors' discriminator step reads a batch of its own: another seed's stream.
        self.discriminator_stream = (
            BatchStream(
                data,
                data.indices(TRAIN),
                self.columns,
                config.batch_size,
                config.seed + 1,
                config.flip,
                share,
                resident,
            )
            if config.lat_dis_step == AUTHORS
            else None
        )
        self.held_out = data.indices(VALIDATION)[: config.eval_images]
        if len(self.held_out) == 0:
            log.warning("No validation images: evaluating on training images.")
            self.held_out = data.indices(TRAIN)[: config.eval_images]
        self.grid: torch.Tensor | None = None
        self.writes = BackgroundWriter()

    def build_critics(
        self, model_config: FaderConfig, reloaded: Classifier | None
    ) -> ImageCritics | None:
        """The authors' image-space discriminators the settings ask for (`train.critics`).

        The classifier discriminator's config goes into the checkpoint's run info, so a resumed
        run rebuilds it before loading its weights."""
        config = self.config
        if not (config.n_ptc_dis or config.n_clf_dis):
            return None
        patch = PatchDiscriminator(model_config) if config.n_ptc_dis else None
        classifier = None
        if config.n_clf_dis:
            saved = self.run_info.get(CLASSIFIER)
            classifier = reloaded or Classifier(
                ClassifierConfig(**saved) if saved else classifier_config(model_config)
            )
            self.run_info[CLASSIFIER] = asdict(classifier.config)
        return ImageCritics(
            patch=patch and training_layout(patch, self.device),
            classifier=classifier and training_layout(classifier, self.device),
            columns=classifier_columns(classifier.config.attributes, model_config)
            if classifier
            else [],
            updates={PATCH: config.n_ptc_dis, CLASSIFIER: config.n_clf_dis},
            weights={PATCH: config.lambda_ptc_dis, CLASSIFIER: config.lambda_clf_dis},
            smooth_label=config.smooth_label,
        )

    def step_options(self, step: int) -> dict:
        """The keyword options of this step: the critics' λ ramp, the authors' second batch."""
        options = {}
        if self.critics is not None:
            options["ramp"] = lambda_schedule(step, 1.0, self.config.lambda_schedule)
        if self.discriminator_stream is not None:
            images, labels = self.discriminator_stream.batch(step)
            options["discriminator_batch"] = (images.to(self.device), labels.to(self.device))
        return options

    @property
    def model_config(self) -> FaderConfig:
        return self.model.config

    def evaluate(self, step: int, writer: "SummaryWriter") -> None:
        """Validation metrics and a sample grid, to the log, TensorBoard and samples/."""
        from torchvision.utils import save_image  # torchvision adds ~1.3 s to every start

        batches = held_out_batches(self.data, self.held_out, self.columns, 64)
        metrics = evaluate(
            self.model,
            self.discriminator,
            batches,
            self.device,
            self.classifier,
            self.model_config.slider_range,
        )
        rows = self.held_out[:8]
        self.grid = sample_grid(
            self.model,
            torch.from_numpy(self.data.read_images(rows)),
            torch.from_numpy(self.data.labels[rows][:, self.columns]),
        )
        self.model_config.metrics.update(metrics)
        for name, value in metrics.items():
            writer.add_scalar(f"validation/{name}", value, step)
        writer.add_image("samples", self.grid, step)
        (self.out / "samples").mkdir(exist_ok=True)
        self.writes.submit(save_image, self.grid, self.out / "samples" / f"step_{step:07d}.png")
        log.info(
            "step %d: validation MSE %.4f, PSNR %.2f dB, latent-discriminator accuracy %.3f%s",
            step,
            metrics["reconstruction_mse"],
            metrics["psnr"],
            metrics["latent_discriminator_accuracy"],
            f", swap accuracy {metrics['swap_accuracy']:.3f}" if "swap_accuracy" in metrics else "",
        )

    def keep_if_best(self, step: int) -> None:
        """Export the model to the run folder when this evaluation beats every earlier one by
        the run's criterion (`--select`); its config and card say which step and why."""
        if self.select_by == LAST:
            return
        metric, higher_is_better = CRITERIA[self.select_by]
        score = self.model_config.metrics.get(metric)
        if score is None or not improves(score, self.selected, higher_is_better):
            return
        self.selected = {"by": self.select_by, "step": step, "score": score}
        config = deepcopy(self.model_config)
        config.training |= {"steps_done": step, "selected_by": self.select_by}
        best = exported_copy(config, host_copy(self.model))
        log.info("step %d: best %s so far (%.4f), kept in the run folder.", step, metric, score)
        self.writes.submit(export_model, best, self.out, self.grid)

    def save(self, step: int) -> None:
        """Checkpoint (for --resume) and the exported model folder, both written atomically by
        process 0, holding every process's random-generator state (their dropout masks)."""
        rng_states = {
            kind: gather_states(state, self.processes)
            for kind, state in generator_states(self.device).items()
        }
        if not self.processes.main:
            return
        # The previous checkpoint is on disk first (a failure to write it is raised here), so
        # at most one copy waits in memory.
        self.writes.wait()
        self.model_config.training["steps_done"] = step
        info = {
            "fader_config": asdict(self.model_config),
            "train_config": asdict(self.config),
            "run": self.run_info,
            "selected": self.selected,
        }
        tensors, metadata = checkpoint_contents(
            self.modules, self.optimizers, step, info, rng_states
        )
        self.writes.submit(write_checkpoint, self.checkpoint, tensors, metadata)
        last = exported_copy(self.model_config, module_state(tensors, "model"))
        folders = [] if self.select_by == LAST else [self.out / LAST_FOLDER]
        if self.select_by == LAST or self.selected is None:  # before any evaluation the last
            folders.append(self.out)  # is the only model: the run folder always holds one
        for folder in folders:
            self.writes.submit(export_model, last, folder, self.grid)

    def push_due(self, step: int) -> bool:
        """`--push-every N`: a commit every N steps; the caller pushes the finished model. The
        same answer in every process, so they all save there (only process 0 has `push`)."""
        if not self.push_every:
            return False
        return step % self.push_every == 0 and step < self.config.steps

    def fit(self) -> FaderNetwork:
        """Train from the current step to `config.steps`; return the model in eval mode.

        The losses stay on the device between readings, every `log_every` steps (reading waits
        for the GPU to finish its queued steps), and at every evaluation, checkpoint and push,
        so nothing is ever saved from a step whose losses were not seen to be finite.
        """
        from torch.utils.tensorboard import SummaryWriter  # loads TensorBoard: only to train

        config, first, main = self.config, self.first_step, self.processes.main
        if first >= config.steps:
            log.info("The checkpoint is at step %d: --steps %d is done.", first, config.steps)
            if main and not (self.out / WEIGHTS_NAME).is_file():
                export_model(self.model, self.out, self.grid)
            return self.model.eval()
        if first:
            log.info("Resuming from step %d of %d.", first, config.steps)
        progress = tqdm(
            total=config.steps, initial=first, desc="Training", unit="step", disable=not main
        )
        writer = SummaryWriter(str(self.out / "tensorboard")) if main else None
        self.model.train()
        losses, clock = RunningLosses(), Throughput(first, config.steps, config.batch_size)
        batches = self.stream.batches(first, config.steps, self.device)
        with StopOnSignal() as stop, progress, writer or nullcontext(), self.writes:
            for step, (images, labels) in enumerate(batches, start=first):
                lam = lambda_schedule(step, config.lambda_dis, config.lambda_schedule)
                losses.add(self.train_step(images, labels, lam, **self.step_options(step)))
                done = step + 1
                progress.update()
                evaluating = done % config.eval_every == 0 or done == config.steps
                saving = done % config.save_every == 0 or done == config.steps
                pushing = self.push_due(done)
                scheduled = done % config.log_every == 0 or evaluating or saving or pushing
                # A read is a collective with several processes: every one must reach it at the
                # same steps, so a signal waits for the next scheduled read there.
                alone_and_asked = not self.processes.several and stop.requested
                if not (scheduled or clock.starts_at(done) or alone_and_asked):
                    continue
                values, stopping = losses.read(self.processes, stop.requested)
                if not all(math.isfinite(v) for v in values.values()):
                    raise TrainingDiverged(
                        f"Loss became {values} between steps {clock.last_read} and {done}; "
                        f"stopped without saving. The last good checkpoint is "
                        f"{self.checkpoint}. Try a lower --lr."
                    )
                rate = clock.read(done)
                progress.set_postfix(
                    recon=f"{values['reconstruction']:.4f}",
                    dis=f"{values['discriminator']:.3f}",
                    lam=f"{lam:.2e}",
                    img_s=f"{rate:.1f}",
                    refresh=False,
                )
                if writer is not None:
                    for name, value in values.items():
                        writer.add_scalar(f"train/{name}_loss", value, done)
                    writer.add_scalar("train/lambda_dis", lam, done)
                    writer.add_scalar("train/images_per_second", rate, done)
                if evaluating and main:
                    self.evaluate(done, writer)
                    self.keep_if_best(done)
                pushing = pushing and not stopping
                if saving or pushing or stopping:  # a pushed model is always a resumable one
                    self.save(done)
                if pushing and self.push is not None:
                    self.writes.wait()  # the folder it publishes is on disk
                    self.push(done)
                if stopping:
                    raise TrainingInterrupted(
                        f"Stopped at step {done}; checkpoint saved to {self.checkpoint}."
                    )
        log.info(clock.summary(self.processes))
        return self.model.eval()


class RunningLosses:
    """Each step's losses summed where they were computed, until the loop reads them.

    Reading a GPU tensor waits for every step queued before it; summing them there does not, so
    a CUDA run reads every `log_every` steps and the GPU never idles between steps meanwhile.
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self.sums: torch.Tensor | None = None
        self.steps = 0

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        stacked = torch.stack([loss.float() for loss in losses.values()])
        self.sums = stacked if self.sums is None else self.sums + stacked
        self.names, self.steps = list(losses), self.steps + 1

    def read(self, processes: Processes, stop_requested: bool) -> tuple[dict[str, float], bool]:
        """The mean of each loss since the last reading (over every process), and whether any
        process was asked to stop, the same in all of them; then start summing afresh."""
        assert self.sums is not None, "read before any step"
        flags = torch.tensor([self.steps, float(stop_requested)], device=self.sums.device)
        packed = total(torch.cat([self.sums, flags]), processes).tolist()
        *sums, steps, stops = packed
        self.sums, self.steps = None, 0
        means = {name: value / steps for name, value in zip(self.names, sums, strict=True)}
        return means, stops > 0


class Throughput:
    """Images per second of the training loop, timed between readings of the losses (each
    waits for the device, so work merely queued is never counted as done).

    The figure a run reports leaves out its first WARMUP_STEPS steps (memory allocation, cuDNN's
    autotuner, recording the CUDA graph) when it has steps to spare; evaluations and checkpoints
    along the way are in it, as a user waits for them too.
    """

    def __init__(self, first: int, stop: int, batch_size: int):
        self.batch_size = batch_size
        self.first_counted = first + WARMUP_STEPS if stop - first > 2 * WARMUP_STEPS else first
        now = time.perf_counter()
        self.last_read, self.last_time = first, now
        self.counted_since = now if self.first_counted == first else None

    def starts_at(self, done: int) -> bool:
        """Whether counting starts after step `done`: the loop reads (and waits) there."""
        return done == self.first_counted and self.counted_since is None

    def read(self, done: int) -> float:
        """Record a reading after step `done`; return the images/s since the previous one."""
        now = time.perf_counter()
        rate = (done - self.last_read) * self.batch_size / max(now - self.last_time, 1e-9)
        if self.starts_at(done):
            self.counted_since = now
        self.last_read, self.last_time = done, now
        return rate

    def summary(self, processes: Processes) -> str:
        """The line `bench/trainer_throughput.py` reads from train.log."""
        steps = self.last_read - self.first_counted
        seconds = max(self.last_time - (self.counted_since or self.last_time), 1e-9)
        rate = steps * self.batch_size / seconds if steps else 0.0
        return (
            f"Trained steps {self.first_counted + 1}–{self.last_read} at {rate:.1f} images/s "
            f"({processes.world_size} process{'es' if processes.several else ''}, "
            f"global batch {self.batch_size})."
        )
