/*!
 * Care feedback chat widget: the loader. One script tag, no framework, no build step.
 *
 *   <script src="https://HOST/widget.js" defer></script>
 *
 * Optional data attributes on that script tag:
 *   data-locale="pl"     language to start in (else the browser's Accept-Language)
 *   data-title="..."     heading of the chat panel
 *   data-api="https://…" base URL of the chat service (default: where this script came from)
 *   data-open="true"     open the chat when the page loads
 *
 * This script runs in the embedding page, so it holds nothing personal. It adds a launcher
 * button and an <iframe> of the chat (chat.html) served from the chat service's own origin;
 * the conversation, its token, its draft and its transcript live in that frame, where this
 * page cannot read them. The page and the frame talk by postMessage, each checking the
 * other's origin, and all the page ever hears is "open", "closed" or "exit" (see chat.js).
 *
 * Where the page's origin may not use the chat (INTAKE_ALLOWED_ORIGINS), the server refuses
 * to be framed here (CSP frame-ancestors) and the API refuses this origin; the launcher then
 * opens a short notice with a link to the chat on the service's own page instead.
 */
(function () {
  "use strict";

  if (window.__careIntakeWidget) {
    return;
  }
  window.__careIntakeWidget = true;

  // ------------------------------------------------------------------ configuration

  var script = document.currentScript;
  if (!script) {
    var candidates = document.querySelectorAll("script[src]");
    for (var s = candidates.length - 1; s >= 0; s--) {
      if (/\/widget\.js(\?|#|$)/.test(candidates[s].src)) {
        script = candidates[s];
        break;
      }
    }
  }
  var scriptUrl = new URL(script ? script.src : "/widget.js", document.baseURI);
  var data = (script && script.dataset) || {};
  var assetOrigin = scriptUrl.origin;
  var apiBase = (data.api || assetOrigin).replace(/\/+$/, "");
  var chatOrigin = new URL(apiBase, document.baseURI).origin;
  var startLocale = data.locale || null;
  var customTitle = data.title || null;
  var openOnLoad = data.open === "true" || data.open === "";
  var MESSAGE_TYPE = "care-intake-chat";
  /** Where "Exit this page" sends this page; the service's INTAKE_EXIT_URL replaces it. */
  var exitUrl = "https://www.bbc.co.uk/weather";

  /** The loader's own words (English fallback); the server's translation replaces them. */
  var TEXT = {
    launcher: "Tell us about care",
    title: "Tell us about care",
    close: "Close chat",
    notAllowed: "This chat cannot be used on this website.",
    notAllowedLink: "Use the chat on our own website instead",
    cannotConnect: "We could not connect to the chat service. Check your connection, then choose Retry.",
    retry: "Retry",
  };

  var ICON_CHAT = "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z";
  var ICON_CLOSE = "M6 6l12 12M18 6L6 18";

  // ------------------------------------------------------------------ small helpers

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text != null) {
      node.textContent = text;
    }
    return node;
  }

  function svgIcon(pathData) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    svg.setAttribute("class", "ciw-icon");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("d", pathData);
    svg.appendChild(path);
    return svg;
  }

  function ensureStylesheet() {
    var href = assetOrigin + "/widget.css";
    var links = document.querySelectorAll("link[rel~='stylesheet']");
    for (var i = 0; i < links.length; i++) {
      if (links[i].href === href) {
        return;
      }
    }
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = href;
    (document.head || document.documentElement).appendChild(link);
  }

  function chatUrl() {
    var params = new URLSearchParams();
    params.set("host", window.location.origin);
    if (startLocale) {
      params.set("locale", startLocale);
    }
    if (customTitle) {
      params.set("title", customTitle);
    }
    return apiBase + "/chat.html?" + params.toString();
  }

  // ------------------------------------------------------------------ the DOM

  var ui = {};
  var state = {
    open: false,
    ready: false, // the frame said it is listening
    pendingOpen: null, // {focus} to send once it is
    access: null, // "allowed" | "not_allowed" | "offline" (null: not known yet)
    exiting: false, // "Exit this page" is under way
  };

  function build() {
    var root = el("div", "ciw-embed");
    root.setAttribute("data-care-intake-widget", "");

    var launcher = el("button", "ciw-launcher");
    launcher.type = "button";
    launcher.setAttribute("aria-expanded", "false");
    launcher.appendChild(svgIcon(ICON_CHAT));
    var launcherLabel = el("span", "ciw-launcher-label", TEXT.launcher);
    launcher.appendChild(launcherLabel);

    var frame = el("iframe", "ciw-frame");
    frame.id = "ciw-frame-" + Math.random().toString(36).slice(2, 10);
    frame.title = customTitle || TEXT.title;
    // Copy the reference number from inside the frame.
    frame.setAttribute("allow", "clipboard-write");
    frame.setAttribute("referrerpolicy", "no-referrer");
    frame.hidden = true;
    launcher.setAttribute("aria-controls", frame.id);

    root.appendChild(launcher);
    root.appendChild(frame);
    document.body.appendChild(root);
    ui = { root: root, launcher: launcher, launcherLabel: launcherLabel, frame: frame, notice: null };
  }

  function applyText(answer) {
    Object.keys(TEXT).forEach(function (key) {
      var value = answer.text && answer.text[key];
      if (typeof value === "string" && value) {
        TEXT[key] = value;
      }
    });
    if (typeof answer.exit_url === "string" && /^https?:\/\/[^\s]+$/.test(answer.exit_url)) {
      exitUrl = answer.exit_url;
    }
    ui.root.lang = answer.locale;
    ui.root.dir = answer.dir === "rtl" ? "rtl" : "ltr";
    ui.root.setAttribute("data-ui-locale", answer.locale);
    ui.launcherLabel.textContent = TEXT.launcher;
    ui.frame.title = customTitle || TEXT.title;
  }

  // ------------------------------------------------------------------ may this page use it?

  /** The launcher's words in the page's language, fetched across origins: the same request
   *  tells whether the chat service accepts this page's origin. A refused CORS request and
   *  being offline look the same to a script, so a plain no-cors probe tells them apart. */
  function checkAccess() {
    var path = "/api/v1/ui-text" + (startLocale ? "?locale=" + encodeURIComponent(startLocale) : "");
    return window.fetch(apiBase + path, {
      headers: { Accept: "application/json" },
      mode: "cors",
      credentials: "omit",
    }).then(function (response) {
      state.access = "allowed";
      return response.ok ? response.json().then(function (answer) {
        if (answer && typeof answer.locale === "string") {
          applyText(answer);
        }
      }, function () {}) : null;
    }, function () {
      return window.fetch(apiBase + "/", { mode: "no-cors", credentials: "omit", cache: "no-store" })
        .then(function () { state.access = "not_allowed"; }, function () { state.access = "offline"; });
    });
  }

  // ------------------------------------------------------------------ talking to the frame

  function tellFrame(event, extra) {
    if (!ui.frame.contentWindow) {
      return;
    }
    var message = { type: MESSAGE_TYPE, event: event };
    Object.keys(extra || {}).forEach(function (key) { message[key] = extra[key]; });
    ui.frame.contentWindow.postMessage(message, chatOrigin);
  }

  function fromFrame(event) {
    if (event.origin !== chatOrigin || event.source !== ui.frame.contentWindow) {
      return;
    }
    var message = event.data;
    if (!message || message.type !== MESSAGE_TYPE) {
      return;
    }
    if (message.event === "ready") {
      state.ready = true;
      state.access = "allowed";
      if (message.open === true && !state.open) {
        show(false);
      } else if (state.pendingOpen) {
        tellFrame("open", state.pendingOpen);
      }
      state.pendingOpen = null;
    } else if (message.event === "close") {
      hide();
    } else if (message.event === "exit") {
      quickExit();
    }
  }

  // ------------------------------------------------------------------ exit this page

  /** The person chose "Exit this page" in the chat (which has already forgotten itself):
   *  hide the chat at once and replace this page with a neutral one. `replace` keeps this
   *  page out of the Back history of this tab. Only the frame's own origin can ask (fromFrame),
   *  and the address is the service's, never one carried in the message. */
  function quickExit() {
    ui.root.hidden = true;
    if (!state.exiting) {
      state.exiting = true;
      window.location.replace(exitUrl);
    }
  }

  /** Shift pressed 3 times on this page (no other key between, within 5 s) while the chat is
   *  open: the same exit. The chat is hidden at once and asked to forget itself first (it then
   *  asks back, above); should it not answer within a second, the page leaves anyway. */
  var exitShift = { count: 0, timer: null };

  function countShift(event) {
    if (event.key !== "Shift" || !state.open || !state.ready) {
      exitShift.count = 0;
      window.clearTimeout(exitShift.timer);
      exitShift.timer = null;
      return;
    }
    exitShift.count += 1;
    if (exitShift.count >= 3) {
      exitShift.count = 0;
      ui.root.hidden = true;
      tellFrame("exit");
      window.setTimeout(quickExit, 1000);
      return;
    }
    if (!exitShift.timer) {
      exitShift.timer = window.setTimeout(function () {
        exitShift.count = 0;
        exitShift.timer = null;
      }, 5000);
    }
  }

  // ------------------------------------------------------------------ open and close

  function open(moveFocus) {
    if (state.access === "not_allowed" || state.access === "offline") {
      showNotice(moveFocus);
      return;
    }
    show(moveFocus);
  }

  function show(moveFocus) {
    state.open = true;
    ui.frame.hidden = false;
    ui.launcher.hidden = true;
    ui.launcher.setAttribute("aria-expanded", "true");
    ui.root.setAttribute("data-open", "true");
    if (moveFocus) {
      ui.frame.focus();
    }
    if (state.ready) {
      tellFrame("open", { focus: !!moveFocus });
    } else {
      state.pendingOpen = { focus: !!moveFocus };
    }
  }

  function hide() {
    state.open = false;
    ui.frame.hidden = true;
    if (ui.notice) {
      ui.notice.hidden = true;
    }
    ui.launcher.hidden = false;
    ui.launcher.setAttribute("aria-expanded", "false");
    ui.root.removeAttribute("data-open");
    ui.launcher.focus();
  }

  /** Where the frame cannot be used: say why, in the page, with a way on. Nothing personal. */
  function showNotice(moveFocus) {
    if (ui.notice) {
      ui.notice.parentNode.removeChild(ui.notice);
    }
    var notAllowed = state.access === "not_allowed";
    var notice = el("section", "ciw-notice");
    var titleId = ui.frame.id + "-notice";
    notice.setAttribute("role", "dialog");
    notice.setAttribute("aria-labelledby", titleId);
    var header = el("div", "ciw-notice-header");
    var title = el("h2", "ciw-notice-title", customTitle || TEXT.title);
    title.id = titleId;
    title.tabIndex = -1;
    var close = el("button", "ciw-close");
    close.type = "button";
    close.setAttribute("aria-label", TEXT.close);
    close.appendChild(svgIcon(ICON_CLOSE));
    close.addEventListener("click", hide);
    header.appendChild(title);
    header.appendChild(close);
    var body = el("div", "ciw-notice-body");
    body.setAttribute("role", "alert");
    body.appendChild(el("p", "ciw-notice-text", notAllowed ? TEXT.notAllowed : TEXT.cannotConnect));
    if (notAllowed) {
      var link = el("a", "ciw-notice-link", TEXT.notAllowedLink);
      link.href = apiBase + "/";
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      body.appendChild(link);
    } else {
      var retry = el("button", "ciw-notice-retry", TEXT.retry);
      retry.type = "button";
      retry.setAttribute("data-action", "retry");
      retry.addEventListener("click", function () {
        state.access = null;
        checkAccess().then(function () {
          if (state.access === "allowed") {
            ui.notice.hidden = true;
            ui.frame.src = chatUrl();
            show(true);
          } else {
            showNotice(true);
          }
        });
      });
      body.appendChild(retry);
    }
    notice.appendChild(header);
    notice.appendChild(body);
    notice.addEventListener("keydown", function (event) {
      if (event.key === "Escape" || event.key === "Esc") {
        event.preventDefault();
        hide();
      }
    });
    ui.root.appendChild(notice);
    ui.notice = notice;
    ui.root.setAttribute("data-error", notAllowed ? "origin_not_allowed" : "cannot_connect");
    ui.launcher.hidden = true;
    ui.launcher.setAttribute("aria-expanded", "true");
    state.open = true;
    if (moveFocus) {
      title.focus({ preventScroll: true });
    }
  }

  // ------------------------------------------------------------------ start

  /** Earlier versions kept the conversation in this page's own storage: take it out. (Not on
   *  the chat service's own pages: there that storage is the frame's, in use.) */
  function forgetOldStorage() {
    if (window.location.origin === chatOrigin) {
      return;
    }
    try {
      var storage = window.sessionStorage;
      for (var i = storage.length - 1; i >= 0; i--) {
        var key = storage.key(i);
        if (key && /^care-intake-(chat|draft):/.test(key)) {
          storage.removeItem(key);
        }
      }
    } catch (e) {
      /* storage blocked: nothing of ours is there */
    }
  }

  function init() {
    forgetOldStorage();
    ensureStylesheet();
    build();
    window.addEventListener("message", fromFrame);
    document.addEventListener("keyup", countShift);
    var checked = checkAccess();
    ui.launcher.addEventListener("click", function () {
      if (state.access === null) {
        checked.then(function () { open(true); });
      } else {
        open(true);
      }
    });
    // The frame loads at once (hidden) so that a conversation in progress can reopen itself;
    // not where the service refuses this page (it would only be refused again).
    checked.then(function () {
      if (state.access !== "not_allowed") {
        ui.frame.src = chatUrl();
      }
    });
    if (openOnLoad) {
      checked.then(function () {
        if (!state.open) {
          open(false);
        }
      });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
