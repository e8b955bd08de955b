// The page's own behaviour, where Gradio's would mislead.
//
// A refused file (text renamed .png) leaves no broken-image icon in the photo box: the status
// under it says why it was refused. Gradio shows the next photo in the same <img>, so it is
// shown again as soon as a picture loads in it (an element's load reaches the document, not
// the window).
for (const [happened, visibility] of [["error", "hidden"], ["load", ""]]) {
  document.addEventListener(happened, (event) => {
    if (event.target.tagName === "IMG" && event.target.closest("#photo")) {
      event.target.style.visibility = visibility;
    }
  }, true);
}

// The sliders, where Gradio's own behaviour would leave box, slider, picture and download
// apart (app.py's TypedSlider and reset_targets say why):
// - a number box left with no number in it ("--", "") gets back the number it had when it
//   was focused (or last entered with Enter), before Gradio's own blur handler would set it
//   to 0; Enter in such a box does the same (Gradio's would move the slider to the middle of
//   its track and edit nothing);
// - a number box left past an end is left to the server (`settle` sets it to the end and
//   says so), where Gradio's blur handler would set it first and the note be lost;
// - a slider's reset button (↺) goes to the photo's starting value, which the hidden
//   #reset-targets element holds, not to the value the page was built with.
// Each new value is typed into the box as a visitor would: an `input` event, which Gradio
// turns into the edit (input) and the download (change).
(() => {
  const box = "[id^=slider-] input[type=number]";
  const focused = new WeakMap();

  function type(input, value) {
    input.value = String(value);
    input.dispatchEvent(new Event("input", { bubbles: true }));
  }

  window.addEventListener("focus", (event) => {
    if (event.target.matches?.(box)) focused.set(event.target, event.target.value);
  }, true);

  function restore(input) {
    const range = input.closest("[id^=slider-]").querySelector("input[type=range]");
    type(input, focused.get(input) || range.value);
  }

  window.addEventListener("keydown", (event) => {
    const input = event.target;
    if (event.key !== "Enter" || !input.matches?.(box)) return;
    if (input.value !== "") {  // a number entered: the one to put back next time
      focused.set(input, input.value);
      return;
    }
    event.preventDefault();
    event.stopImmediatePropagation();
    restore(input);
  }, true);

  window.addEventListener("blur", (event) => {
    const input = event.target;
    if (!input.matches?.(box)) return;
    if (input.value === "") {
      restore(input);
    } else if (Number(input.value) < Number(input.min) || Number(input.value) > Number(input.max)) {
      event.stopImmediatePropagation();  // the server sets it to the end, and says so
    }
  }, true);

  window.addEventListener("click", (event) => {
    const button = event.target.closest?.("[id^=slider-] .reset-button");
    const held = document.querySelector("#reset-targets [data-targets]");
    if (!button || !held) return;
    const slider = button.closest("[id^=slider-]");
    const target = JSON.parse(held.dataset.targets)[slider.id];
    if (target === undefined) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    type(slider.querySelector("input[type=number]"), target);
  }, true);
})();

// The live webcam's start button: Gradio's streaming camera calls it "Record", but nothing is
// recorded or kept; each frame is edited as it plays. Its own words come back as Gradio
// redraws the button, so they are replaced whenever they appear.
(() => {
  const start = "#live-camera button[aria-label='capture photo']";
  new MutationObserver(() => {
    for (const button of document.querySelectorAll(start)) {
      const walker = document.createTreeWalker(button, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        if (node.textContent.trim() === "Record") node.textContent = "Start live edit";
      }
    }
  }).observe(document.body, { childList: true, subtree: true, characterData: true });
})();
