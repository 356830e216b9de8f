// The conversation page: start at the newest message, and let "↩" on a customer's message quote it in
// the reply. Without JavaScript the page still works (no quoting; the thread starts at the top).
(function () {
  "use strict";
  const thread = document.getElementById("conversation");
  if (thread && thread.dataset.latest === "true") {
    thread.scrollTop = thread.scrollHeight;
  }
  const form = document.getElementById("conv-reply-form");
  if (!form) return;
  const hidden = form.querySelector("input[name=reply_to]");
  const chip = document.getElementById("conv-replying");
  const chipText = document.getElementById("conv-replying-text");
  const text = form.querySelector("textarea[name=text]");

  function quote(wamid, excerpt) {
    hidden.value = wamid;
    chipText.textContent = excerpt; // text, never HTML: these are the customer's words
    chip.hidden = !wamid;
  }
  if (hidden.value) chip.hidden = false;
  thread.addEventListener("click", function (event) {
    const button = event.target.closest(".conv-reply-to");
    if (!button) return;
    quote(button.dataset.wamid, button.dataset.excerpt);
    text.focus();
  });
  document.getElementById("conv-replying-cancel").addEventListener("click", function () {
    quote("", "");
  });
  // Enter sends, Shift+Enter starts a new line, as in WhatsApp Web.
  text.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (text.value.trim()) form.requestSubmit();
    }
  });
})();
