() => {
  // Must match app.css's 1100 px breakpoint: below it the viewer is not beside the chat, so an opened cable slides
  // in over the page (html.cc-drawer-open) instead of appearing out of sight below it.
  const NARROW = window.matchMedia("(max-width: 1099px)");
  const root = document.documentElement;
  const closeDrawer = () => root.classList.remove("cc-drawer-open");

  // Citation chips sit in chat messages and in the cable viewer, which gradio re-renders as answers stream in,
  // so one capturing listener on the document serves every chip, present or future, and keeps the browser
  // (and the chat's own link handling) from following the chip's or the copy link's href.
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a.cc-link");
    if (link) {
      event.preventDefault();
      event.stopPropagation();
      copyLink(link);
      return;
    }
    const chip = event.target.closest("a.cc-cite");
    if (!chip) {
      const panel = document.getElementById("cc-viewer-panel");
      // A click outside the open drawer closes it; the page's own clicks (the hidden open button) do not.
      if (event.target.closest(".cc-drawer-close") || (event.isTrusted && root.classList.contains("cc-drawer-open")
          && panel && !panel.contains(event.target))) closeDrawer();
      return;
    }
    event.preventDefault();
    event.stopPropagation();
    // The chat's sanitizer drops data- attributes, so the reference travels in the href: #cc-09ASTANA664-6.
    const parts = /^#cc-(\w+?)(?:-(\d+))?$/.exec(chip.getAttribute("href") || "");
    if (!parts) return;
    window.ccRef = parts[2] ? `${parts[1]} ¶${parts[2]}` : parts[1];
    document.getElementById("cc-open")?.click();
  }, true);
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") closeDrawer(); });

  // Asking marks the page busy (the Ask button dims) until gradio has finished the answer (ui/app.py takes the mark
  // off): gradio drops a question asked meanwhile, and the mark shows why, and tells tests when to ask again.
  const answering = () => root.classList.add("cc-answering");
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.target.closest?.("#cc-input")) {
      answering();
    }
  }, true);
  document.addEventListener("click", (event) => {
    if (event.target.closest?.("#cc-send, #cc-chat button.example")) answering();
  }, true);
  NARROW.addEventListener("change", closeDrawer);

  // A link copied from the Sources panel opens the cable at its paragraph in a fresh tab (?cable=…&p=…).
  function copyLink(link) {
    const url = new URL(link.getAttribute("href"), window.location.href).href;
    const done = () => {
      const label = link.textContent;
      link.textContent = "Link copied";
      link.classList.add("cc-copied");
      setTimeout(() => { link.textContent = label; link.classList.remove("cc-copied"); }, 1800);
    };
    // The clipboard API needs a secure context (https or this machine); elsewhere fall back to a selection copy.
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(url).then(done, () => legacyCopy(url) && done());
    } else if (legacyCopy(url)) {
      done();
    }
  }
  function legacyCopy(text) {
    const area = Object.assign(document.createElement("textarea"), {value: text});
    area.style.cssText = "position:fixed;top:0;left:0;opacity:0";
    document.body.appendChild(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    return copied;
  }

  // Bring what the viewer was asked for on screen once it is there: the server's reply reaches the page a few
  // frames after the event ends, so wait for that state, not for a time. ui/handlers.py wraps what it opened,
  // cable or error, in an element named after the request: #cc-open-09ASTANA664-6, or #cc-open-link for a link.
  function revealWhen(selector, number) {
    const until = performance.now() + 15000;
    const step = () => {
      const viewer = document.getElementById("cc-viewer");
      if (viewer?.querySelector(selector)) reveal(viewer, number);
      else if (performance.now() < until) requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  }
  window.ccReveal = (ref) => {
    const parts = /^\s*(\w+)(?:\s*¶(\d+))?/.exec(ref || "");
    if (parts) revealWhen(`#cc-open-${parts[1]}${parts[2] ? `-${parts[2]}` : ""}`, parts[2]);
  };
  window.ccRevealLink = () => {
    const query = new URLSearchParams(window.location.search);
    const number = (query.get("p") || "").trim().replace(/^¶/, "");
    if (query.get("cable")) revealWhen("#cc-open-link", /^\d+$/.test(number) ? number : undefined);
  };

  function reveal(viewer, number) {
    if (NARROW.matches) root.classList.add("cc-drawer-open");
    requestAnimationFrame(() => {
      const box = viewer.getBoundingClientRect();
      if (box.top < 0 || box.bottom > window.innerHeight) viewer.scrollIntoView({block: "nearest"});
      const focus = number && viewer.querySelector(".cc-focus");
      if (!focus) { viewer.scrollTo({top: 0}); return; }
      // The cable's id bar stays pinned at the top of the viewer: land below it. A paragraph that fits is shown
      // whole; in a longer one the quoted sentence is what the reader came for, so it goes to the top instead.
      const pinned = viewer.querySelector(".cc-cable-top")?.getBoundingClientRect().height || 0;
      const room = viewer.clientHeight - pinned - 16;
      const mark = focus.querySelector("mark");
      const target = focus.getBoundingClientRect().height <= room || !mark ? focus : mark;
      const offset = target.getBoundingClientRect().top - viewer.getBoundingClientRect().top;
      viewer.scrollTo({top: viewer.scrollTop + offset - pinned - (target === mark ? 28 : 8)});
    });
  }

  // The chat does not follow the answer to its end: a new question is scrolled to the top of the chat and kept
  // there while its answer grows below it, so the reader sees the question and the start of its answer. Once the
  // answer is finished, or the reader scrolls the chat, the chat is theirs until the next question. The question
  // is found again on every change, as gradio may replace a message's elements while the chat updates.
  let asked = 0;
  let pinned = -1;
  for (const kind of ["wheel", "touchmove", "keydown", "mousedown"]) {
    document.addEventListener(kind, (event) => { if (event.target.closest?.("#cc-chat")) pinned = -1; },
                              {capture: true, passive: true});
  }
  const follow = new MutationObserver(() => {
    const chat = document.getElementById("cc-chat");
    const questions = chat ? chat.querySelectorAll(".cc-q") : [];
    if (questions.length !== asked) {
      pinned = questions.length > asked ? questions.length - 1 : -1;
      asked = questions.length;
    }
    if (pinned < 0 || !questions[pinned]) return;
    const row = questions[pinned].closest(".message-row") || questions[pinned];
    const scroller = row.closest(".bubble-wrap");
    if (scroller) scroller.scrollTop += row.getBoundingClientRect().top - scroller.getBoundingClientRect().top - 8;
    const answers = chat.querySelectorAll(".cc-msg");
    const last = answers[answers.length - 1];
    const answered = last && (questions[pinned].compareDocumentPosition(last) & Node.DOCUMENT_POSITION_FOLLOWING)
      && !last.querySelector(".cc-thinking, .cc-streaming");
    if (answered) pinned = -1;
  });
  follow.observe(document.body, {childList: true, subtree: true, characterData: true});
}
