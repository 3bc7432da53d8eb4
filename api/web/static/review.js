/* Keyboard shortcuts for the review pages (no dependencies; the pages work without it).
   Candidate page: c / r / e decide, v reveals the reference, j / k next / previous.
   Queue page: j / k move between candidates, Enter opens the focused one.
   Keys typed into a field (the note) are left alone; Escape leaves the field. */
(function () {
  "use strict";

  function typing(target) {
    return target instanceof HTMLElement &&
      (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  function clickKey(key) {
    var button = document.querySelector('button[data-key="' + key + '"]');
    if (!button || button.disabled) return false;
    var form = button.form;
    if (form && form.requestSubmit) form.requestSubmit(button); else button.click();
    return true;
  }

  function follow(id) {
    var link = document.getElementById(id);
    if (!link) return false;
    window.location.assign(link.href);
    return true;
  }

  function moveInQueue(step) {
    var links = Array.prototype.slice.call(document.querySelectorAll("a.row-link"));
    if (!links.length) return false;
    var at = links.indexOf(document.activeElement);
    var next = at < 0 ? (step > 0 ? 0 : links.length - 1) : Math.min(links.length - 1, Math.max(0, at + step));
    links[next].focus();
    return true;
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    var key = event.key;
    var onQueue = !!document.querySelector("[data-shortcuts=queue]");
    var done = false;
    if (key === "j") done = onQueue ? moveInQueue(1) : follow("next-link");
    else if (key === "k") done = onQueue ? moveInQueue(-1) : follow("prev-link");
    else if (key === "c" || key === "r" || key === "e" || key === "v") done = clickKey(key);
    if (done) event.preventDefault();
  });

  // One decision per click: a second press while the first is on its way would hit the next candidate.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    window.setTimeout(function () {
      Array.prototype.forEach.call(form.querySelectorAll("button"), function (b) { b.disabled = true; });
    }, 0);
  });
})();
