"""A slider's move on a route of its own: the hot path, outside Gradio's event handling.

Gradio answers an event with its whole machinery (its request model, each input's and output's
processing, the session's state): 7–8 ms of server CPU for a POST whose handler does nothing,
as long as a face's edit takes after its decode; the null app of `bench/move_cost.py` answers
on a route like this one for 0.7–2.3 ms. The page's slider events run no server function:
their script (`MOVE_SCRIPT`) sends the move here and hands the answer back to Gradio as the
event's outputs, so Gradio still holds every value the page shows.

It checks what Gradio's components would, before any work: the body's type and size before it
is parsed, each field's type and length (`page.inputs`), a model the page has loaded, the photo
of the session that sent it (the page's Gradio session, which the browser made up and sends
with every event). A move waits for one of the edits' turns, as the API's edits do, and
one that a newer move of its session overtook while it waited is not made. The answer: the
crop, the preview and the sliders settled (`page.sliders.settle`: a number typed past an end
set to it, and a note); `{"skip": true}` while a number box holds no number, or for a move
overtaken; `{"again": true}` for a photo the server no longer holds, which the script then
sends through Gradio with the photo itself (`MOVE_AGAIN_ID`), to be prepared again, the
moves made meanwhile waiting for it and going on under the new id; a refusal in words. The
page's other edits of a photo the server holds (a face ticked, "Reset all", a new photo or
model's first edit) are sent by the same script, so they take their turn with the sliders'
moves, and no older picture is shown over a newer one.
"""

import asyncio
import itertools
import json
import weakref
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fader.library import ModelLibrary
from fader.photo_store import ID_CHARS
from page.calls import limited, markdown_text, user_errors
from page.edits import edit
from page.inputs import MAX_NAME_CHARS, typed_number, within_caps
from page.photos import FACE_LABELS
from page.sliders import MAX_SLIDERS, settle

MOVE_PATH = "/fader/move"
MAX_MOVE_BYTES = 8192  # a move's JSON: 17 numbers, a model's name, ids, 16 face labels
# a move's answer waited for, then said lost (later moves wait on it); also the longest the moves
# wait for a photo the server let go to be prepared again
MOVE_TIMEOUT_MS = 30_000
MOVE_AGAIN_ID = "move-again"  # the hidden button whose click edits with the photo itself

# The script of the sliders' events (and the page's other edits: `app.then_move`): the event's
# inputs in `Move`'s order; its outputs the crop, the preview, the sliders (then "keep photo
# detail") and the note under them. One move is in flight at a time; a move made meanwhile
# replaces any other waiting, and the moves it replaced change nothing (an answer out of order
# would show an older picture); one answered while a newer move waits shows its pictures only
# (a drag's preview follows it), never its sliders' values or note, which would undo the newer
# move's. What went wrong is said in the note, which the next move's answer replaces. The route
# is Gradio's own root path's, on the page's origin (as Gradio's front end reaches its own
# routes). `{__type__: "update"}` is Gradio's "leave this output as it is".
MOVE_SCRIPT = f"""async (...inputs) => {{
  const keep = {{__type__: "update"}};
  const unchanged = Array({MAX_SLIDERS + 4}).fill(keep);
  const moves = window.faderMoves ??= {{made: 0, busy: Promise.resolve(), said: false}};
  const mine = ++moves.made;
  for (let busy; busy !== moves.busy; ) await (busy = moves.busy);  // it may be made longer
  if (mine !== moves.made) return unchanged;
  const [model, sent_id, ...rest] = inputs;
  const renamed = moves.renamed;  // a photo prepared again meanwhile: its new id
  const photo_id = renamed?.to && sent_id === renamed.from ? renamed.to : sent_id;
  const values = rest.slice(0, {MAX_SLIDERS}), [detail, faces] = rest.slice({MAX_SLIDERS});
  const body = JSON.stringify({{session: window.__gradio_session_hash__, model, photo_id,
                                values, detail, faces}});
  const root = new URL(window.gradio_config?.root || "/", location.href).pathname;
  let answered;
  moves.busy = answered = fetch(root.replace(/\\/$/, "") + "{MOVE_PATH}", {{
      method: "POST", body, headers: {{"content-type": "application/json"}},
      signal: AbortSignal.timeout?.({MOVE_TIMEOUT_MS})}})  // none in older browsers
    .then((reply) => reply.json())
    .catch(() => ({{error: "The server did not answer; move the slider again."}}));
  const answer = await answered;
  if (answer.skip) return unchanged;
  if (answer.again) {{  // the moves wait for the photo prepared again (`after_preparing`)
    moves.renamed = {{from: photo_id}};
    moves.busy = new Promise((done) => {{
      moves.prepared = done;
      setTimeout(() => {{ moves.preparing = false; done(); }}, {MOVE_TIMEOUT_MS});  // given up
    }});
    if (!moves.preparing) {{  // one preparation at a time: a late one's end ends this wait
      moves.preparing = true;
      document.getElementById("{MOVE_AGAIN_ID}")?.click();
    }}
    return unchanged;
  }}
  if (mine !== moves.made) {{  // a newer move waits: its answer alone settles the sliders
    return "crop" in answer ? [answer.crop, answer.photo, ...unchanged.slice(2)] : unchanged;
  }}
  if (answer.error) {{
    moves.said = true;
    return [...unchanged.slice(1), answer.error];
  }}
  const settled = answer.settled;
  if (moves.said && settled.at(-1)?.__type__ === "update") settled[settled.length - 1] = "";
  moves.said = false;
  return [answer.crop, answer.photo, ...settled];
}}"""


AGAIN_FAILED_NOTE = (
    "The server had let this photo go and could not prepare it again: upload it once more."
)


def after_preparing(failed: bool) -> str:
    """The script run after the hidden button's edit, on its success and on its failure
    (Gradio's front end runs `.then` on success only), with the photo's id it left on the page:
    the moves that waited for it go on, under that id (the old one after a failure: the next
    move tries again). A failure is said under the sliders (its only output), as a move's error
    is, until a move is made."""
    said = f"[{json.dumps(AGAIN_FAILED_NOTE)}]" if failed else "[]"
    return f"""(photo_id) => {{
  const moves = window.faderMoves;
  if (moves) {{
    moves.preparing = false;
    if (moves.renamed) moves.renamed.to = photo_id;
    moves.said ||= {json.dumps(failed)};
    moves.prepared?.();
  }}
  return {said};
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
    except (UnicodeDecodeError, ValueError, RecursionError):  # 8 KB of "[[[…", 5,000 digits
        raise ValueError("A move is a JSON object.") from None
    if not isinstance(fields, dict):
        raise ValueError("A move is a JSON object.")
    values, faces = fields.get("values"), fields.get("faces")
    if not isinstance(values, list) or len(values) != MAX_SLIDERS:
        raise ValueError(f"A move's values are a list of {MAX_SLIDERS} numbers.")
    if faces is not None and (not isinstance(faces, list) or len(faces) > len(FACE_LABELS)):
        raise ValueError(f"A move's faces are a list of at most {len(FACE_LABELS)} labels.")
    if faces is not None and any(label not in FACE_LABELS for label in faces):
        first, last = FACE_LABELS[0], FACE_LABELS[-1]
        raise ValueError(f"A move's faces are labels from {first!r} to {last!r}.")
    return Move(
        session=capped_text(fields.get("session"), MAX_NAME_CHARS),
        model=capped_text(fields.get("model"), MAX_NAME_CHARS),
        photo_id=capped_text(none_as_empty(fields.get("photo_id")), ID_CHARS),
        values=[typed_number(value) for value in values],
        detail=typed_number(fields.get("detail")),
        faces=None if faces is None else [FACE_LABELS.index(label) for label in faces],
    )


def none_as_empty(value: Any) -> Any:
    """A photo id the page sends as null before any photo was accepted: no photo ("")."""
    return "" if value is None else value


def capped_text(value: Any, max_chars: int) -> str:
    """`value` if it is text within `max_chars` (`within_caps`, as the components cap theirs)."""
    if not isinstance(value, str):
        raise ValueError("A move's names and ids are text.")
    within_caps(value, max_chars)
    return value


@dataclass
class Moves:
    """What a demo's moves are made with: its models, the turns its edits share, and each
    session's newest move (while it waits)."""

    library: ModelLibrary
    turns: asyncio.Semaphore
    newest: dict[str, int] = field(default_factory=dict)  # session → its newest move's number
    numbers: itertools.count = field(default_factory=itertools.count)

    async def answer(self, move: Move) -> dict[str, Any]:
        """`move` made with one of the turns, unless a newer move of its session came while
        it waited (the page's script sends one at a time: only a client that does not waits
        behind itself)."""
        if move.model in self.library.names and not self.library.loaded(move.model):
            raise ValueError(f"Choose {move.model!r} on the page first.")  # not a bare POST's
        number = self.newest[move.session] = next(self.numbers)
        try:
            return await limited(self.made_unless_overtaken, self.turns)(move, number)
        finally:
            if self.newest.get(move.session) == number:
                del self.newest[move.session]

    def made_unless_overtaken(self, move: Move, number: int) -> dict[str, Any]:
        if self.newest.get(move.session) != number:
            return {"skip": True}
        return user_errors(self.made)(move)

    def made(self, move: Move) -> dict[str, Any]:
        """The page's live edit of `move` (`page.edits.edit`, inline), and the sliders settled."""
        editor = self.library.editor(move.model)
        if move.photo_id and not editor.photos.holds(move.session, move.photo_id):
            return {"again": True}
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


# Each demo's moves, found from the request's app (Gradio keeps the demo it serves there); the
# app launches every demo with `MOVE_ROUTE` (`app.LAUNCH`).
DEMO_MOVES: "weakref.WeakKeyDictionary[gr.Blocks, Moves]" = weakref.WeakKeyDictionary()


class FastJSONResponse(JSONResponse):
    """A JSON answer written by orjson: the standard library's encoder scans the answer's two
    pictures (their base64) character by character, on the event loop, many times slower
    (BENCHMARKS.md, run 17). The same JSON: its pictures are ASCII, its numbers finite (a
    NumPy number among them is written as the number it is, as `json` writes a float)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


async def answer_move(request: Request) -> JSONResponse:
    """`POST MOVE_PATH`: a JSON body read up to `MAX_MOVE_BYTES`, then the move."""
    moves = DEMO_MOVES.get(request.app.get_blocks())
    if moves is None:
        return JSONResponse({"error": "This page has no slider moves."}, status_code=404)
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return JSONResponse({"error": "A move is sent as application/json."}, status_code=415)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_MOVE_BYTES:
            return JSONResponse({"error": "A move is a small JSON object."}, status_code=413)
    try:
        return FastJSONResponse(await moves.answer(parsed_move(body)))
    except gr.Error as error:  # the handlers' messages (`user_errors`), the inputs' caps
        return JSONResponse({"error": markdown_text(error.message)}, status_code=400)
    except ValueError as error:
        return JSONResponse({"error": markdown_text(str(error))}, status_code=400)


MOVE_ROUTE = Route(MOVE_PATH, answer_move, methods=["POST"])
