"""The chat UI: ``build_app(assistant)`` lays out the page and wires its events; ``serve`` launches it.

Offline by construction: analytics and the version check are off (the variable is set before gradio is
imported, since gradio reads it at import), there is no share link, and the theme's fonts are files gradio
ships and this server serves, so the page loads nothing from outside the server. tests/test_browser.py records
every request the page makes to check, and tests/test_ui.py every name the server looks up.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from pathlib import Path

import gradio as gr

from rag.assistant import Assistant
from rag.errors import ServeError
from ui.handlers import ANY, Handlers, viewer_placeholder
from ui.ports import check_port
from ui.render import header_html

__all__ = ["CONCURRENCY", "build_app", "launch_options", "serve"]

ASSETS = Path(__file__).parent / "assets"
# Questions wait on I/O (an LLM server) as often as on the CPU: enough slots that one slow question never
# holds up the others. The Assistant is shared and thread-safe, so this costs no extra model.
CONCURRENCY = 32
MAX_THREADS = 64
# Fonts that ship inside gradio and are served by this server (never Google's), then system fallbacks.
SANS = [gr.themes.LocalFont("IBM Plex Sans", weights=(400, 600, 700)), "Helvetica Neue", "Arial", "sans-serif"]
MONO = [gr.themes.LocalFont("IBM Plex Mono", weights=(400, 600)), "Menlo", "Consolas", "monospace"]
VIEWER_HEAD = ('<div class="cc-viewer-head"><div class="cc-panel-title">Cable viewer</div><button type="button" '
               'class="cc-drawer-close" aria-label="Close the cable viewer">Close ✕</button></div>')


def theme() -> gr.themes.Base:
    return gr.themes.Base(primary_hue="blue", neutral_hue="slate", radius_size="md", font=SANS,
                          font_mono=MONO).set(
        body_background_fill="#f6f7fb",
        block_border_color="#e3e7ef",
        block_shadow="0 1px 2px rgba(16, 24, 40, .04)",
        button_primary_background_fill="#2f5fd0",
        button_primary_background_fill_hover="#244db3",
    )


def launch_options() -> dict[str, object]:
    """What ``launch`` needs beyond the Blocks (gradio 6 takes the look at launch, not at construction)."""
    return {"theme": theme(), "css": (ASSETS / "app.css").read_text(encoding="utf-8"),
            "js": (ASSETS / "app.js").read_text(encoding="utf-8"), "share": False, "ssr_mode": False,
            "pwa": False, "mcp_server": False, "enable_monitoring": False, "footer_links": ["api"],
            "max_threads": MAX_THREADS}


def build_app(assistant: Assistant) -> gr.Blocks:
    handlers = Handlers(assistant)
    stats = assistant.stats()
    first, last = stats["years"]
    years = [ANY] + [str(y) for y in range(last, first - 1, -1)] if first is not None else [ANY]
    with gr.Blocks(title="CableChat", analytics_enabled=False, fill_width=True, delete_cache=(3600, 86400)) as app:
        chat_state = gr.State([])
        turns = gr.State([])
        gr.HTML(header_html(stats))
        with gr.Row(equal_height=False, elem_id="cc-main-row"):
            with gr.Column(scale=1, min_width=250, elem_id="cc-side"):
                gr.HTML('<div class="cc-panel-title">Answer mode</div>')
                modes = handlers.modes()
                mode = gr.Radio(modes, value=modes[0], show_label=False, container=False, elem_id="cc-mode",
                                interactive=len(modes) > 1)
                status = gr.HTML(handlers.initial_status())
                gr.HTML('<div class="cc-panel-title">Filters</div><p class="cc-hint">Apply to your next '
                        'question and show on it.</p>')
                with gr.Group():
                    origin = gr.Textbox(label="Origin", placeholder="e.g. Moscow", elem_id="cc-origin", max_lines=1)
                    with gr.Row():
                        year_from = gr.Dropdown(years, value=ANY, label="From year", elem_id="cc-year-from",
                                                min_width=90)
                        year_to = gr.Dropdown(years, value=ANY, label="To year", elem_id="cc-year-to", min_width=90)
                    classification = gr.Dropdown([ANY, *assistant.filter_values("classification")], value=ANY,
                                                 label="Classification", elem_id="cc-classification")
                    tags = gr.Textbox(label="Tags", placeholder="e.g. TSPA, KNNP", elem_id="cc-tags", max_lines=1)
                clear_filters = gr.Button("Clear filters", size="sm", variant="secondary")
            with gr.Column(scale=3, min_width=420, elem_id="cc-chat-column"):
                # autoscroll off: ui/assets/app.js keeps a new question at the top while its answer grows below.
                chatbot = gr.Chatbot(
                    show_label=False, height="68vh", elem_id="cc-chat", layout="bubble", latex_delimiters=[],
                    autoscroll=False,
                    sanitize_html=True, allow_tags=False, feedback_options=None, buttons=[],
                    placeholder=("<b>Ask the cables a question.</b><br>Answers quote the cables and cite each "
                                 "paragraph; click a citation to read the whole cable."),
                    examples=[{"text": q} for q in handlers.examples()], group_consecutive_messages=False)
                with gr.Row(equal_height=True):
                    message = gr.Textbox(show_label=False, placeholder="Ask about a person, place or event…",
                                         scale=8, container=False, elem_id="cc-input", autofocus=True, max_lines=6)
                    send = gr.Button("Ask", variant="primary", scale=1, min_width=80, elem_id="cc-send")
                with gr.Row(elem_id="cc-actions"):
                    new_chat = gr.Button("New chat", size="sm", variant="secondary", elem_id="cc-new", scale=0,
                                         min_width=110)
                    export = gr.DownloadButton("Export conversation (.md)", size="sm", interactive=False,
                                               elem_id="cc-export", variant="secondary", scale=0, min_width=210)
            with gr.Column(scale=2, min_width=340, elem_id="cc-viewer-panel"):
                timeline = gr.Plot(show_label=False, container=False, elem_id="cc-timeline", format="png",
                                   visible=False)
                gr.HTML(VIEWER_HEAD)
                viewer = gr.HTML(viewer_placeholder(), elem_id="cc-viewer")
        open_ref = gr.Textbox(visible="hidden", elem_id="cc-open-ref")
        open_button = gr.Button(visible="hidden", elem_id="cc-open")

        filters = [mode, origin, year_from, year_to, classification, tags]
        ask = {"fn": handlers.respond, "inputs": [message, chat_state, turns, *filters],
               "outputs": [chatbot, chat_state, turns, message, timeline, export], "show_progress": "hidden",
               "api_visibility": "private"}
        # Gradio ignores a second question while one is being answered; ui/assets/app.js marks the page busy when
        # one is asked, and the mark is taken off only once gradio has finished that event, not at its last text.
        idle = {"fn": None, "js": "() => document.documentElement.classList.remove('cc-answering')"}
        message.submit(**ask).then(**idle)
        send.click(**ask).then(**idle)
        chatbot.example_select(_example_text, None, [message], api_visibility="private").then(**ask).then(**idle)
        open_button.click(None, None, [open_ref], js="() => window.ccRef", api_visibility="private").then(
            handlers.open_cable, [open_ref, turns], [viewer], api_visibility="private").then(
            None, js="() => window.ccReveal(window.ccRef)")
        clear_filters.click(lambda: ("", ANY, ANY, ANY, ""), None, [origin, year_from, year_to, classification, tags],
                            api_visibility="private")
        fresh = {"fn": _fresh_conversation, "outputs": [chatbot, chat_state, turns, timeline, export, viewer],
                 "api_visibility": "private"}
        new_chat.click(**fresh)
        chatbot.clear(**fresh)
        if assistant.llm_configured:
            app.load(handlers.llm_status, None, [status], api_visibility="private", show_progress="hidden")
            mode.change(handlers.llm_status, None, [status], api_visibility="private", show_progress="hidden")
        # Links: /?cable=09ASTANA664&p=11 opens the viewer at that paragraph, /?q=… asks that question.
        app.load(handlers.link_cable, None, [viewer], api_visibility="private", show_progress="hidden").then(
            None, js="() => window.ccRevealLink()")
        app.load(handlers.link_question, [chat_state, turns, *filters], ask["outputs"], api_visibility="private",
                 show_progress="hidden")
        gr.api(handlers.api_ask, api_name="ask")
    return app


def _fresh_conversation() -> tuple[object, ...]:
    return [], [], [], gr.Plot(value=None, visible=False), gr.DownloadButton(value=None, interactive=False), \
        viewer_placeholder()


def _example_text(event: gr.SelectData) -> str:
    value = event.value
    return str(value.get("text", "")) if isinstance(value, dict) else str(value)


def serve(assistant: Assistant, *, host: str = "127.0.0.1", port: int = 7860, auth: tuple[str, str] | None = None,
          block: bool = True) -> gr.Blocks:
    """Serve the UI for ``assistant`` until interrupted (or, with ``block=False``, in the background)."""
    app = build_app(assistant)
    app.queue(default_concurrency_limit=CONCURRENCY)
    try:
        app.launch(server_name=host, server_port=port, auth=auth, prevent_thread_lock=True, quiet=True,
                   auth_message="CableChat: sign in to ask the cables." if auth else None, **launch_options())
    except OSError as exc:  # gradio's "Cannot find empty port": say which port, why, and what to choose instead
        app.close()
        check_port(host, port)
        raise ServeError(f"cannot serve on {host} port {port} ({exc})", host=host, port=port) from None
    stats = assistant.stats()
    cables = int(stats.get("cables", 0))
    building = " so far, still being built" if stats.get("building") else ""
    print(f"CableChat is serving {stats['index']} ({cables:,} cable{'s' * (cables != 1)}{building}) at {app.local_url}"
          f"{' (sign-in required)' if auth else ''}", flush=True)
    if block:
        app.block_thread()
    return app
