() => {
  // Citation chips sit in chat messages and in the cable viewer, which gradio re-renders as answers stream in,
  // so one capturing listener on the document serves every chip, present or future, and keeps the browser
  // (and the chat's own link handling) from following the chip's href.
  document.addEventListener("click", (event) => {
    const chip = event.target.closest("a.cc-cite");
    if (!chip) return;
    event.preventDefault();
    event.stopPropagation();
    // The chat's sanitizer drops data- attributes, so the reference travels in the href: #cc-09ASTANA664-6.
    const parts = /^#cc-(\w+?)(?:-(\d+))?$/.exec(chip.getAttribute("href") || "");
    if (!parts) return;
    window.ccRef = parts[2] ? `${parts[1]} ¶${parts[2]}` : parts[1];
    document.getElementById("cc-open")?.click();
  }, true);
}
