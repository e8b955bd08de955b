"""The Gradio page's parts, beside `app.py`, which lays the page out and wires them to it.

`inputs` (components that refuse before a handler runs), `calls` (how a handler is bound to an
event), `sliders`, `models`, `photos`, `edits` (the handlers: plain functions of the model library,
their inputs and the visitor's session), `moves` (a slider's move on the app's own route), `api`
(the API as its clients read it) and `webcam` (the live camera). Only the page imports Gradio; the
pixels it shows are made by `fader.web_pictures`. Like `app.py`, it runs from a checkout: `pip
install .` installs the library alone.
"""
