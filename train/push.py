"""`python -m train.push RUN --repo ID`: publish a trained run's model on the Hugging Face Hub.

Only the model leaves the machine (`fader.folder.PUBLISHED_FILES`): config.json,
model.safetensors, the README.md card (its "use it" snippets pointed at the repo), the sample grid
and, when the folder has one, the classifier's two files. The checkpoint (optimizer state, the
latent discriminator), logs, TensorBoard files and samples stay local. The run folder itself is
never modified: the upload is staged in a temporary folder.

The token comes from `HF_TOKEN` or the `hf auth login` cache, found by huggingface_hub itself;
it is never printed or logged, and is scrubbed from any error message passed on.
"""

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id

from fader.card import with_model_id
from fader.folder import CARD_NAME, MODEL_FILES, PUBLISHED_FILES, is_model_folder

TOKENS_PAGE = "https://huggingface.co/settings/tokens"
log = logging.getLogger("train")


def check_can_push(repo_id: str, token: str | None = None) -> None:
    """Refuse at once what can be known without the network: a bad repo id, offline mode, no
    token. `python -m train --push-to-hub` calls this before training, not after."""
    try:
        validate_repo_id(repo_id)
        valid = repo_id.count("/") == 1  # the card must name the repo exactly
    except HFValidationError:
        valid = False
    if not valid:
        raise ValueError(
            f"{repo_id!r} is not a Hub repo id: use NAMESPACE/NAME (your user or organisation "
            "name, then letters, digits, '-', '_' or '.'), e.g. alice/fader-smiling-male."
        )
    if constants.is_offline_mode():
        raise ValueError(
            "HF_HUB_OFFLINE is set, so nothing can be pushed: unset it (and connect) to push."
        )
    if token is None and get_token() is None:
        raise ValueError(
            "No Hugging Face token found: run `hf auth login`, or set HF_TOKEN, with a token "
            f"that has write access ({TOKENS_PAGE})."
        )


def stage_upload(run_dir: Path, folder: Path, repo_id: str) -> list[str]:
    """Put into `folder` exactly what a push of `run_dir` uploads; return the file names.

    Weights are hard-linked where possible (they can be large) and only read; the card is a
    new file naming `repo_id`, so the run's own card is untouched.
    """
    run_dir = Path(run_dir)
    if not is_model_folder(run_dir):
        raise ValueError(
            f"{run_dir} holds no exported model (config.json and model.safetensors): pass the "
            "--out folder of a `python -m train` run that saved at least once."
        )
    names = [name for name in PUBLISHED_FILES if (run_dir / name).is_file()]
    for name in names:
        if name == CARD_NAME:
            card = (run_dir / name).read_text(encoding="utf-8")
            (folder / name).write_text(with_model_id(card, repo_id), encoding="utf-8")
            continue
        try:
            os.link(run_dir / name, folder / name)
        except OSError:  # another file system, or links not allowed
            shutil.copy2(run_dir / name, folder / name)
    return names


def push_run(
    run_dir: str | Path,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload Fader model",
) -> str:
    """Create `repo_id` if needed (private only applies then) and upload the run's model as
    one commit; return the repo's URL. Every failure is a ValueError saying what to do."""
    check_can_push(repo_id, token)
    api = HfApi(token=token)
    secret = token or get_token() or ""
    with tempfile.TemporaryDirectory(prefix="fader-push-") as staging:
        stage_upload(Path(run_dir), Path(staging), repo_id)  # fails before any network call
        try:
            repo = api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(
                repo_id=repo_id,
                folder_path=staging,
                allow_patterns=list(PUBLISHED_FILES),
                commit_message=commit_message,
            )
        except HfHubHTTPError as error:
            raise ValueError(scrub(refusal(error, repo_id), secret)) from None
        except Exception as error:  # no network, DNS, proxy: the HTTP client's own errors
            raise ValueError(
                scrub(
                    f"Could not reach the Hugging Face Hub ({type(error).__name__}: {error}). "
                    "Check your connection (and HF_ENDPOINT if set), then push again.",
                    secret,
                )
            ) from None
    return str(repo)


def refusal(error: HfHubHTTPError, repo_id: str) -> str:
    """What an HTTP refusal from the Hub means for someone pushing a model."""
    status = error.response.status_code if error.response is not None else None
    if status == 401:
        return (
            "The Hub refused the token (401: invalid or expired). Log in again with "
            f"`hf auth login`, or set HF_TOKEN to a token from {TOKENS_PAGE}."
        )
    if status == 403:
        namespace = repo_id.split("/")[0] if "/" in repo_id else "your account"
        return (
            f"The token may not write to {repo_id} (403). Use a token with write access to "
            f"{namespace} ({TOKENS_PAGE}), or push to a namespace you own."
        )
    return f"The Hub refused to publish {repo_id} ({status}): {error}"


def scrub(message: str, secret: str) -> str:
    """Never pass a token on, even if some layer put it into an error message."""
    return message.replace(secret, "***") if secret else message


def pusher(run_dir: Path, repo_id: str, private: bool) -> Callable[[int], None]:
    """The `--push-every` hook: push the freshly exported model as a commit. A failure is a
    warning, never the end of a long training run; the final push is retried at the end."""

    def push(step: int) -> None:
        try:
            url = push_run(run_dir, repo_id, private, commit_message=f"Step {step}")
        except ValueError as error:
            log.warning("Push at step %d failed, training goes on: %s", step, error)
        else:
            log.info("Step %d pushed to %s", step, url)

    return push


def retry_command(run_dir: Path, repo_id: str, private: bool) -> str:
    return f"python -m train.push {run_dir} --repo {repo_id}" + (" --private" if private else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.push",
        description="Publish a trained Fader model on the Hugging Face Hub. Uploads "
        f"{', '.join(MODEL_FILES)} (and a classifier, if the folder has one) only, never the "
        "checkpoint, logs or samples. The token "
        f"comes from HF_TOKEN or `hf auth login`; it needs write access ({TOKENS_PAGE}).",
        epilog="example: python -m train.push runs/smile_male --repo alice/fader-smiling-male",
    )
    parser.add_argument("run", type=Path, help="the --out folder of a `python -m train` run")
    parser.add_argument("--repo", required=True, help="Hub repo id, e.g. alice/fader-smile")
    parser.add_argument(
        "--private", action="store_true", help="create the repo private (if it does not exist)"
    )
    parser.add_argument("--message", default="Upload Fader model", help="the commit message")
    args = parser.parse_args(argv)
    try:
        url = push_run(args.run, args.repo, args.private, commit_message=args.message)
    except ValueError as error:
        print(f"error: {error} (nothing was changed in {args.run})", file=sys.stderr)
        return 2
    print(f"Pushed {args.run} to {url}")
    print(f"Use it: python app.py --model {args.repo}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
