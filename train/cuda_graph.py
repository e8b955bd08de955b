"""The training step on CUDA, recorded once as a CUDA graph and replayed every step after.

At the paper's batch of 32 the GPU finishes each kernel sooner than Python can launch the next:
on an H100 an eager paper-preset step took 15.6 ms, of which the GPU was busy 7.5 ms. Replaying
the recorded step launches all of its kernels at once: 3.8 ms. With the discriminator's dropout
off, the parameters after the same steps are bit-identical to eager ones (BENCHMARKS.md); with it
on, the graph draws its own dropout masks, fresh at each replay. The graph holds everything by
address, so the batch is copied into tensors it owns, λ_dis is a tensor it reads, and Adam is
built `capturable`.
"""

import torch

from fader.model import FaderNetwork, LatentDiscriminator
from train.step import training_step

WARMUP_STEPS = 3  # eager steps on a side stream first, so cuDNN and the allocator settle


class GraphedTrainingStep:
    """`train.step.training_step` with the same arguments, replayed from a CUDA graph.

    The returned losses are the graph's own tensors: read them before the next call.
    """

    def __init__(
        self,
        model: FaderNetwork,
        discriminator: LatentDiscriminator,
        optimizers: dict[str, torch.optim.Optimizer],
        clip: float,
        precision: torch.dtype | None,
    ):
        self.networks = (model, discriminator, optimizers)
        self.clip, self.precision = clip, precision
        self.steps = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.losses: dict[str, torch.Tensor] = {}

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, lambda_dis: float
    ) -> dict[str, torch.Tensor]:
        if self.inputs is None:
            device = images.device
            self.inputs = (torch.empty_like(images), torch.empty_like(labels))
            self.inputs += (torch.zeros((), device=device),)
        static_images, static_labels, static_lambda = self.inputs
        if images.shape != static_images.shape or labels.shape != static_labels.shape:
            # A graph replays one shape only; an odd batch trains eagerly, with the same result.
            return training_step(
                *self.networks, images, labels, lambda_dis, self.clip, self.precision
            )
        static_images.copy_(images, non_blocking=True)
        static_labels.copy_(labels, non_blocking=True)
        static_lambda.fill_(lambda_dis)
        self.steps += 1
        if self.steps <= WARMUP_STEPS:
            return self.eager_step_on_side_stream()
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            # Records the step without running it. Meanwhile the batch-reading thread keeps
            # pinning host memory, which the default ("global") mode forbids any thread to do.
            with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                self.losses = self.step_on_inputs()
        self.graph.replay()
        return self.losses

    def step_on_inputs(self) -> dict[str, torch.Tensor]:
        images, labels, lambda_dis = self.inputs
        return training_step(*self.networks, images, labels, lambda_dis, self.clip, self.precision)

    def eager_step_on_side_stream(self) -> dict[str, torch.Tensor]:
        """Capture needs the step to have run on a stream other than the default one first."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            losses = self.step_on_inputs()
        torch.cuda.current_stream().wait_stream(side)
        return losses
