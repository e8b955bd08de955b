"""A slider's move on a route of its own: the hot path, outside Gradio's event handling.

Gradio answers an event with its whole machinery (its request model, each input's and output's
processing, the session's state): 7–8 ms of server CPU for a POST that does nothing, as long as
a face's edit takes after its decode. `POST MOVE_PATH` answers the same edit for 0.6 ms of its
own. The page's slider events run no server function: their script (`MOVE_SCRIPT`) sends the
move here and hands the answer back to Gradio as the event's outputs, so Gradio still holds
every value the page shows.

It checks what Gradio's components would: the body's size before it is parsed, each field's
type and length (`page.inputs`), the photo's session (the page's Gradio session, which the
browser made up and sends with every event); a move waits for one of the edits' turns, as the
page's other edits do. It answers the crop, the preview, and a message for the status area when
the move could not be made, and the sliders settled (`page.sliders.settle`: a number typed past
an end set to it, and a note); `{"skip": true}` while a number box holds no number.
"""

import asyncio
import json
import weakref
from dataclasses import dataclass
from typing import Any

import gradio as gr
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fader.editor import MAX_FACES
from fader.library import ModelLibrary
from fader.photo_store import ID_CHARS
from page.calls import user_errors
from page.edits import edit
from page.inputs import MAX_NAME_CHARS, typed_number
from page.photos import face_labels
from page.sliders import MAX_SLIDERS, settle

MOVE_PATH = "/fader/move"
MAX_MOVE_BYTES = 8192  # a move's JSON: 17 numbers, a model's name, ids, 16 face labels
FACE_LABELS = face_labels(MAX_FACES)

# The script of the sliders' events: the event's inputs in `Move`'s order; its outputs the
# crop, the preview, the status under the photo, the sliders (then "keep photo detail") and the
# note under them (`settle`). One move is in flight at a time; a move made meanwhile replaces any
# other waiting, and the moves it replaced change nothing (an answer out of order would show an
# older picture). A refusal is said under the photo (a photo no longer kept is the photo's
# news); an answer lost on the way under the sliders, where the next move's note replaces it.
# `{__type__: "update"}` is Gradio's "leave this output as it is".
MOVE_SCRIPT = f"""async (...inputs) => {{
  const keep = {{__type__: "update"}};
  const unchanged = Array({MAX_SLIDERS + 5}).fill(keep);
  const moves = window.faderMoves ??= {{made: 0, busy: Promise.resolve()}};
  const mine = ++moves.made;
  await moves.busy;
  const [model, photo_id, ...rest] = inputs;
  if (mine !== moves.made || !photo_id) return unchanged;
  const values = rest.slice(0, {MAX_SLIDERS}), [detail, faces] = rest.slice({MAX_SLIDERS});
  const body = JSON.stringify({{session: window.__gradio_session_hash__, model, photo_id,
                                values, detail, faces}});
  const root = (window.gradio_config?.root ?? "").replace(/\/$/, "");  // as Gradio's own calls
  let answered;
  moves.busy = answered = fetch(root + "{MOVE_PATH}", {{method: "POST", body,
      headers: {{"content-type": "application/json"}}}})
    .then((reply) => reply.json())
    .catch(() => ({{lost: "The server did not answer; move the slider again."}}));
  const answer = await answered;
  if (answer.skip) return unchanged;
  if (answer.error) return [keep, keep, answer.error, ...unchanged.slice(3)];  // the photo's
  if (answer.lost) return [...unchanged.slice(1), answer.lost];  // under the sliders, for now
  return [answer.crop, answer.photo, keep, ...answer.settled];
}}"""


@dataclass(frozen=True)
class Move:
    """A move's fields, checked as the page's components check them."""

    session: str
    model: str
    photo_id: str
    values: list[float | None]
    detail: float | None
    faces: list[int] | None


def parsed_move(body: bytes) -> Move:
    """The move in `body` (JSON), every field checked before it is used."""
    try:
        fields = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # 8 KB of "[[[…"
        raise ValueError("A move is a JSON object.") from None
    if not isinstance(fields, dict):
        raise ValueError("A move is a JSON object.")
    values, faces = fields.get("values"), fields.get("faces")
    if not isinstance(values, list) or len(values) > MAX_SLIDERS:
        raise ValueError(f"A move takes at most {MAX_SLIDERS} slider values.")
    if faces is not None and (not isinstance(faces, list) or len(faces) > MAX_FACES):
        raise ValueError(f"A move takes at most {MAX_FACES} faces.")
    return Move(
        session=capped_text(fields.get("session"), MAX_NAME_CHARS),
        model=capped_text(fields.get("model"), MAX_NAME_CHARS),
        photo_id=capped_text(fields.get("photo_id"), ID_CHARS),
        values=[typed_number(value) for value in values],
        detail=typed_number(fields.get("detail")),
        faces=None if faces is None else [FACE_LABELS.index(f) for f in faces if f in FACE_LABELS],
    )


def capped_text(value: Any, max_chars: int) -> str:
    if not isinstance(value, str) or len(value) > max_chars:
        raise ValueError(f"A move's names and ids are text of at most {max_chars} chars.")
    return value


@dataclass(frozen=True)
class Moves:
    """What a demo's moves are made with: its models, and the turns its edits share."""

    library: ModelLibrary
    turns: asyncio.Semaphore

    def answer(self, move: Move) -> dict[str, Any]:
        """The page's live edit (`page.edits.edit`, inline) of `move`, and the sliders settled;
        errors as `user_errors` words them."""
        return user_errors(self.made)(move)

    def made(self, move: Move) -> dict[str, Any]:
        crop, photo, _ = edit(
            self.library,
            move.model,
            None,
            move.photo_id,
            *move.values,
            session=move.session,
            inline=True,
            detail=move.detail,
            faces=move.faces,
        )
        if isinstance(crop, dict):  # gr.skip(): a number box holds no number yet
            return {"skip": True}
        settled = settle(self.library, move.model, *move.values, move.detail)
        return {"crop": crop, "photo": photo, "settled": settled}


# Each demo's moves, found from the request's app (Gradio keeps the demo it serves there).
DEMO_MOVES: "weakref.WeakKeyDictionary[gr.Blocks, Moves]" = weakref.WeakKeyDictionary()


async def answer_move(request: Request) -> JSONResponse:
    """`POST MOVE_PATH`: the body read up to `MAX_MOVE_BYTES`, then the move."""
    moves = DEMO_MOVES.get(request.app.get_blocks())
    if moves is None:
        return JSONResponse({"error": "This page has no slider moves."}, status_code=404)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_MOVE_BYTES:
            return JSONResponse({"error": "A move is a small JSON object."}, status_code=413)
    try:
        move = parsed_move(body)
        async with moves.turns:
            return JSONResponse(await asyncio.to_thread(moves.answer, move))
    except gr.Error as error:  # the handlers' messages (`user_errors`), the inputs' caps
        return JSONResponse({"error": error.message}, status_code=400)
    except ValueError as error:
        return JSONResponse({"error": str(error)}, status_code=400)


MOVE_ROUTE = Route(MOVE_PATH, answer_move, methods=["POST"])
