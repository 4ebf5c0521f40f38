/*!
 * Care feedback chat: the conversation itself, inside a frame served from the intake server.
 *
 * widget.js (the loader on the embedding page) adds a launcher and an <iframe> of chat.html;
 * everything personal lives here, on our own origin: the token, the conversation id and the
 * unsent draft (this origin's sessionStorage), the transcript (this document). The embedding
 * page cannot read any of it; the only thing it hears is open or closed:
 *
 *   frame -> page   {type: "care-intake-chat", event: "ready", open: bool}   (open: resume now)
 *                   {type: "care-intake-chat", event: "close"}               (Close or Escape)
 *                   {type: "care-intake-chat", event: "exit"}  (Exit this page: leave the page now)
 *   page -> frame   {type: "care-intake-chat", event: "open", focus: bool}
 *                   {type: "care-intake-chat", event: "exit"}  (Shift x3 on the page: forget, exit)
 *
 * Messages go only to the embedding origin named in ?host= (the browser delivers nothing if the
 * parent is another origin), and only messages from our parent with that origin are heard.
 * Who may frame this page at all is decided by the server (CSP frame-ancestors).
 *
 * Query parameters: host (the embedding page's origin), locale, title. Opened on its own (not
 * in a frame) the page is simply the chat.
 *
 * Everything the server sends is shown with textContent (never as HTML). No inline styles.
 * The widget's own words (buttons, labels, errors) come translated from GET /api/v1/ui-text
 * for the conversation's language; the English below is the built-in fallback.
 */
(function () {
  "use strict";

  // ------------------------------------------------------------------ configuration

  var params = new URLSearchParams(window.location.search);
  /** The API lives beside this page (chat.html may be served under a path prefix). */
  var apiBase = new URL(".", window.location.href).href.replace(/\/+$/, "");
  var startLocale = params.get("locale") || null;
  var MESSAGE_TYPE = "care-intake-chat";
  var hostOrigin = embeddingOrigin(params.get("host"));
  var embedded = window.parent !== window && hostOrigin !== null;
  var STORAGE_KEY = "care-intake-chat:" + apiBase;
  var DRAFT_KEY = "care-intake-draft:" + apiBase;
  var REQUEST_TIMEOUT_MS = 20000;
  /** Where "Exit this page" goes until the server says (INTAKE_EXIT_URL). */
  var DEFAULT_EXIT_URL = "https://www.bbc.co.uk/weather";
  /** GOV.UK's "Exit this page": Shift pressed 3 times, nothing else between, within 5 s. */
  var EXIT_SHIFT_PRESSES = 3;
  var EXIT_SHIFT_WINDOW_MS = 5000;
  /** Each language's own name, shown in that language (so anyone can find their own). */
  var NATIVE_NAMES = {
    en: "English", cy: "Cymraeg", pl: "Polski", ro: "Română", pa: "ਪੰਜਾਬੀ", ur: "اردو",
    pt: "Português", es: "Español", ar: "العربية", bn: "বাংলা", gu: "ગુજરાતી", it: "Italiano",
  };
  var RTL_LOCALES = { ar: true, ur: true };

  /** The origin the loader said it runs on, if it is one; where the browser can tell who
   *  the parent really is (ancestorOrigins), it must agree. */
  function embeddingOrigin(value) {
    if (!value || !/^https?:\/\/[^\/\s?#]+$/.test(value)) {
      return null;
    }
    var origin;
    try {
      origin = new URL(value).origin;
    } catch (e) {
      return null;
    }
    var ancestors = window.location.ancestorOrigins;
    if (ancestors && ancestors.length && ancestors[0] !== origin) {
      return null;
    }
    return origin;
  }

  /** The widget's own words in English, keyed as in bot/channels/web_ui_text.py (a test keeps
   *  the two the same). Replaced by the server's translation for the conversation's language. */
  var DEFAULT_TEXT = {
    launcher: "Tell us about care",
    title: "Tell us about care",
    close: "Close chat",
    toolbar: "Chat controls",
    back: "Back",
    restart: "Start again",
    language: "Language",
    help: "Help",
    privacy: "Privacy",
    cancel: "Cancel",
    cancelTitle: "Stop and delete everything?",
    cancelText: "If you stop now, we delete your answers and this chat. We keep nothing. You cannot undo this.",
    cancelConfirm: "Yes, stop and delete",
    cancelKeep: "No, carry on",
    conversation: "Conversation",
    answers: "Your options",
    you: "You said:",
    answerLabel: "Your answer",
    placeholder: "Type your answer",
    send: "Send",
    hint: "Press Enter to send. Press Shift and Enter for a new line.",
    referenceLabel: "Your reference number",
    copy: "Copy",
    copied: "Copied",
    copiedStatus: "Reference number copied.",
    copyFailed: "Could not copy. Please write the number down.",
    newConversation: "Start a new conversation",
    retry: "Retry",
    notSent: "Not sent — check your connection. Retrying…",
    notSentManual: "Not sent — check your connection, then choose Retry.",
    cannotConnect: "We could not connect to the chat service. Check your connection, then choose Retry.",
    busy: "The service is busy. Trying again…",
    rateLimited: "Please wait a moment. Trying again shortly…",
    expired: "This conversation has ended or expired. You can start a new one.",
    notAllowed: "This chat cannot be used on this website.",
    notAllowedLink: "Use the chat on our own website instead",
    tooLong: "Your message is too long. Please make it shorter.",
    serverError: "Something went wrong. Please try again.",
    exit: "Exit this page",
    exitHint: "Exit, or press Shift 3 times, to leave this chat at once. It does not delete your browser history.",
    danger: "In danger now? Call 999",
    restartTitle: "Start again from the beginning?",
    restartText: "If you start again, we delete the answers you have given so far. You cannot undo this.",
    restartConfirm: "Yes, start again",
    change: "Change",
  };
  var TEXT = {};
  Object.keys(DEFAULT_TEXT).forEach(function (key) { TEXT[key] = DEFAULT_TEXT[key]; });
  /** A page's own data-title is its own words: it is kept in every language. */
  var customTitle = params.get("title") || null;
  if (customTitle) {
    TEXT.title = customTitle;
  }
  /** The global commands, in the toolbar at every step. Cancel asks first (see confirmCancel). */
  var COMMANDS = ["back", "restart", "language", "help", "privacy", "cancel"];

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

  var ICON_CLOSE = "M6 6l12 12M18 6L6 18";
  var ICON_GLOBE = "M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18zM3 12h18M12 3c2.5 2.7 3.7 5.7 3.7 9s-1.2 6.3-3.7 9" +
    "M12 3c-2.5 2.7-3.7 5.7-3.7 9s1.2 6.3 3.7 9";

  /** The Language button: a globe, the word "Language", and the current language's own name
   *  (in that language, so a screen reader says it right), so anyone can recognise it. */
  function languageLabel(button) {
    var locale = interfaceText.locale;
    button.textContent = "";
    button.appendChild(svgIcon(ICON_GLOBE));
    button.appendChild(el("span", "ciw-tool-label", TEXT.language));
    if (NATIVE_NAMES[locale]) {
      var name = el("span", "ciw-tool-current", NATIVE_NAMES[locale]);
      name.lang = locale;
      name.dir = RTL_LOCALES[locale] ? "rtl" : "ltr";
      button.appendChild(name);
    }
  }

  var uid = 0;
  function nextId(prefix) {
    uid += 1;
    return "ciw-" + prefix + "-" + uid;
  }

  function uuid() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map.call(bytes, function (b) {
      return (b + 0x100).toString(16).slice(1);
    }).join("");
    return hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-" + hex.slice(12, 16) + "-" +
      hex.slice(16, 20) + "-" + hex.slice(20);
  }

  function prefersReducedMotion() {
    return !!(window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches);
  }

  function loadSession() {
    try {
      var raw = window.sessionStorage.getItem(STORAGE_KEY);
      var parsed = raw ? JSON.parse(raw) : null;
      if (parsed && typeof parsed.conversation_id === "string" && typeof parsed.token === "string") {
        return parsed;
      }
    } catch (e) {
      /* storage blocked or corrupt: start fresh */
    }
    return null;
  }

  function saveSession(conversationId, token) {
    try {
      window.sessionStorage.setItem(
        STORAGE_KEY, JSON.stringify({ conversation_id: conversationId, token: token }));
    } catch (e) {
      /* storage blocked: the conversation just will not survive a reload */
    }
  }

  function clearSession() {
    try {
      window.sessionStorage.removeItem(STORAGE_KEY);
      window.sessionStorage.removeItem(DRAFT_KEY);
    } catch (e) {
      /* ignore */
    }
  }

  /** What is typed but not yet sent survives a reload (a long account is hard to retype). */
  function saveDraft(value) {
    try {
      if (value) {
        window.sessionStorage.setItem(DRAFT_KEY, value);
      } else {
        window.sessionStorage.removeItem(DRAFT_KEY);
      }
    } catch (e) {
      /* ignore */
    }
  }

  function loadDraft() {
    try {
      return window.sessionStorage.getItem(DRAFT_KEY) || "";
    } catch (e) {
      return "";
    }
  }

  // ------------------------------------------------------------------ the DOM

  var ui = {};

  function build() {
    var root = el("div", "ciw-root");
    root.setAttribute("data-care-intake-widget", "");
    root.lang = "en";
    root.dir = "ltr";

    var panelId = nextId("panel");
    var titleId = nextId("title");

    var panel = el("section", "ciw-panel");
    panel.id = panelId;
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-modal", "false");
    panel.setAttribute("aria-labelledby", titleId);
    panel.lang = "en";
    panel.dir = "ltr";

    var header = el("div", "ciw-header");
    var title = el("h2", "ciw-title", TEXT.title);
    title.id = titleId;
    title.tabIndex = -1;
    var close = el("button", "ciw-close");
    close.type = "button";
    close.setAttribute("aria-label", TEXT.close);
    close.appendChild(svgIcon(ICON_CLOSE));
    // "Exit this page" (GOV.UK's pattern): one press and this chat is gone from the screen.
    var exit = el("button", "ciw-exit", TEXT.exit);
    exit.type = "button";
    exit.setAttribute("data-action", "exit");
    header.appendChild(title);
    header.appendChild(exit);
    header.appendChild(close);

    // Always there, read once in reading order (not a live region: it is not news each turn).
    var safety = el("div", "ciw-safety");
    var danger = el("p", "ciw-danger", TEXT.danger);
    var exitHint = el("p", "ciw-exit-hint", TEXT.exitHint);
    exitHint.id = nextId("exit-hint");
    exit.setAttribute("aria-describedby", exitHint.id);
    safety.appendChild(danger);
    safety.appendChild(exitHint);

    var toolbar = el("div", "ciw-toolbar");
    toolbar.setAttribute("role", "group");
    toolbar.setAttribute("aria-label", TEXT.toolbar);
    var tools = {};
    COMMANDS.forEach(function (command) {
      var button = el("button", "ciw-tool", TEXT[command]);
      button.type = "button";
      button.setAttribute("data-command", command);
      if (command === "cancel" || command === "restart") {
        button.setAttribute("aria-haspopup", "dialog");
        button.setAttribute("aria-expanded", "false");
      }
      if (command === "cancel") {
        button.classList.add("ciw-tool--cancel");
      }
      if (command === "language") {
        languageLabel(button);
      }
      tools[command] = button;
      toolbar.appendChild(button);
    });

    var body = el("div", "ciw-body");
    body.tabIndex = 0;
    body.setAttribute("role", "region");
    body.setAttribute("aria-label", TEXT.conversation);

    var log = el("div", "ciw-log");
    log.setAttribute("role", "log");
    log.setAttribute("aria-live", "polite");
    log.setAttribute("aria-relevant", "additions");
    log.setAttribute("aria-label", TEXT.conversation);

    var typing = el("div", "ciw-typing");
    typing.setAttribute("aria-hidden", "true");
    typing.hidden = true;
    typing.appendChild(el("span", "ciw-dot"));
    typing.appendChild(el("span", "ciw-dot"));
    typing.appendChild(el("span", "ciw-dot"));

    var choices = el("div", "ciw-choices");
    choices.setAttribute("role", "group");
    choices.setAttribute("aria-label", TEXT.answers);
    choices.hidden = true;

    var done = el("div", "ciw-done");
    done.hidden = true;
    var refBox = el("div", "ciw-reference");
    refBox.hidden = true;
    var refLabel = el("p", "ciw-reference-label", TEXT.referenceLabel);
    var refRow = el("div", "ciw-reference-row");
    var refValue = el("p", "ciw-reference-value");
    refValue.id = nextId("reference");
    var copy = el("button", "ciw-button ciw-button--secondary ciw-copy", TEXT.copy);
    copy.type = "button";
    copy.setAttribute("aria-describedby", refValue.id);
    refRow.appendChild(refValue);
    refRow.appendChild(copy);
    refBox.appendChild(refLabel);
    refBox.appendChild(refRow);
    var fresh = el("button", "ciw-button ciw-new", TEXT.newConversation);
    fresh.type = "button";
    done.appendChild(refBox);
    done.appendChild(fresh);

    body.appendChild(log);
    body.appendChild(typing);
    body.appendChild(choices);
    body.appendChild(done);

    var alert = el("div", "ciw-alert");
    alert.setAttribute("role", "alert");
    var status = el("div", "ciw-visually-hidden");
    status.setAttribute("role", "status");

    // "Cancel" and "Start again" ask once, here, saying what would be lost (see askToConfirm).
    var confirm = el("div", "ciw-confirm");
    confirm.setAttribute("role", "alertdialog");
    confirm.hidden = true;
    var confirmTitle = el("p", "ciw-confirm-title", TEXT.cancelTitle);
    confirmTitle.id = nextId("confirm-title");
    var confirmText = el("p", "ciw-confirm-text", TEXT.cancelText);
    confirmText.id = nextId("confirm-text");
    confirm.setAttribute("aria-labelledby", confirmTitle.id);
    confirm.setAttribute("aria-describedby", confirmText.id);
    var confirmRow = el("div", "ciw-confirm-row");
    var stop = el("button", "ciw-button ciw-button--danger ciw-stop", TEXT.cancelConfirm);
    stop.type = "button";
    stop.setAttribute("data-action", "cancel-confirm");
    var keep = el("button", "ciw-button ciw-button--secondary ciw-keep", TEXT.cancelKeep);
    keep.type = "button";
    keep.setAttribute("data-action", "cancel-keep");
    confirmRow.appendChild(stop);
    confirmRow.appendChild(keep);
    confirm.appendChild(confirmTitle);
    confirm.appendChild(confirmText);
    confirm.appendChild(confirmRow);

    var composer = el("form", "ciw-composer");
    composer.hidden = true;
    composer.noValidate = true;
    var textareaId = nextId("answer");
    var hintId = nextId("hint");
    var label = el("label", "ciw-visually-hidden", TEXT.answerLabel);
    label.htmlFor = textareaId;
    var textarea = el("textarea", "ciw-input");
    textarea.id = textareaId;
    textarea.rows = 2;
    textarea.placeholder = TEXT.placeholder;
    textarea.setAttribute("aria-describedby", hintId);
    textarea.autocomplete = "off";
    var hint = el("p", "ciw-visually-hidden", TEXT.hint);
    hint.id = hintId;
    var send = el("button", "ciw-button ciw-send", TEXT.send);
    send.type = "submit";
    composer.appendChild(label);
    composer.appendChild(hint);
    composer.appendChild(textarea);
    composer.appendChild(send);

    panel.appendChild(header);
    panel.appendChild(safety);
    panel.appendChild(toolbar);
    panel.appendChild(body);
    panel.appendChild(alert);
    panel.appendChild(status);
    panel.appendChild(confirm);
    panel.appendChild(composer);

    root.appendChild(panel);
    document.body.appendChild(root);

    ui = {
      root: root, panel: panel, title: title,
      close: close, toolbar: toolbar, tools: tools, body: body, log: log, typing: typing,
      choices: choices, done: done, refBox: refBox, refLabel: refLabel, refValue: refValue,
      copy: copy, fresh: fresh, alert: alert, status: status, composer: composer, label: label,
      textarea: textarea, hint: hint, send: send, confirm: confirm, confirmTitle: confirmTitle,
      confirmText: confirmText, stop: stop, keep: keep, exit: exit, danger: danger,
      exitHint: exitHint,
    };
  }

  // ------------------------------------------------------------------ state

  var state = {
    conversationId: null,
    token: null,
    started: false, // a conversation was opened or resumed (or is being)
    busy: false,
    pending: null, // {payload, echo, id, attempts}
    retryTimer: null,
    retryAction: null,
    lastReply: null,
    copied: false, // the Copy button says "Copied"
    statusKey: null, // what the status region says, as a TEXT key
    confirming: null, // the command the confirmation is asking about ("cancel", "restart")
    alertSpec: null, // what the alert shows: {message, action, link}, to redraw it in another language
  };

  // ------------------------------------------------------------------ HTTP

  function NetworkError(cause) {
    this.name = "NetworkError";
    this.cause = cause;
  }

  function request(method, path, body, token) {
    var headers = { Accept: "application/json" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
    }
    if (token) {
      headers.Authorization = "Bearer " + token;
    }
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    var timer = controller ? window.setTimeout(function () { controller.abort(); }, REQUEST_TIMEOUT_MS) : null;
    return window.fetch(apiBase + path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      mode: "cors",
      credentials: "omit",
      cache: "no-store",
      signal: controller ? controller.signal : undefined,
    }).then(function (response) {
      return response.text().then(function (raw) {
        var json = null;
        try {
          json = raw ? JSON.parse(raw) : null;
        } catch (e) {
          json = null;
        }
        return { status: response.status, ok: response.ok, data: json, headers: response.headers };
      });
    }, function (error) {
      throw new NetworkError(error);
    }).finally(function () {
      if (timer) {
        window.clearTimeout(timer);
      }
    });
  }

  function errorInfo(response) {
    var error = response && response.data && response.data.error;
    return {
      code: (error && error.code) || "",
      message: (error && typeof error.message === "string" && error.message) || "",
    };
  }

  /** An error the server explained: its own words while the interface is in English (they are
   *  English), otherwise the widget's translated words for that kind of error. */
  function serverMessage(info) {
    var key = "serverError";
    if (info.code === "too_large") {
      key = "tooLong";
    } else if (info.code === "rate_limited") {
      key = "rateLimited";
    }
    return { key: key, raw: info.message || null };
  }

  // ------------------------------------------------------------------ rendering

  var URL_PATTERN = /(https?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]])/g;

  /** Plain text, with web addresses made into links (built as elements, never as HTML). */
  function appendText(container, text) {
    var value = String(text == null ? "" : text);
    var last = 0;
    var match;
    URL_PATTERN.lastIndex = 0;
    while ((match = URL_PATTERN.exec(value)) !== null) {
      if (match.index > last) {
        container.appendChild(document.createTextNode(value.slice(last, match.index)));
      }
      var link = el("a", "ciw-link", match[0]);
      link.href = match[0];
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      container.appendChild(link);
      last = match.index + match[0].length;
    }
    if (last < value.length) {
      container.appendChild(document.createTextNode(value.slice(last)));
    }
  }

  /** A safe https address to link to, or null: anything else (http, javascript:, data:,
   *  an address with spaces or without a host) is never made into a link. */
  function httpsUrl(value) {
    var raw = String(value == null ? "" : value);
    if (!/^https:\/\/[^\/\s<>"'`\\][^\s<>"'`\\]*$/.test(raw)) {
      return null;
    }
    try {
      var parsed = new URL(raw);
      return parsed.protocol === "https:" && parsed.hostname ? raw : null;
    } catch (err) {
      return null;
    }
  }

  /** A message's links (the next step a person can take), as a list of real links under its
   *  text; each opens in a new tab, so the chat stays where it is. */
  function appendLinks(item, links) {
    var list = null;
    (Array.isArray(links) ? links : []).forEach(function (link) {
      var href = link && httpsUrl(link.url);
      var label = link && typeof link.label === "string" ? link.label : "";
      if (!href || !label) {
        return;
      }
      if (!list) {
        list = el("ul", "ciw-links");
        list.dir = "auto";
      }
      var a = el("a", "ciw-link", label);
      a.href = href;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      var li = el("li", "ciw-links-item");
      li.appendChild(a);
      list.appendChild(li);
    });
    if (list) {
      item.appendChild(list);
    }
  }

  function addMessage(role, text, links) {
    var item = el("div", "ciw-msg ciw-msg--" + (role === "user" ? "user" : "bot"));
    item.setAttribute("data-role", role === "user" ? "user" : "bot");
    if (role === "user") {
      var prefix = el("span", "ciw-visually-hidden", TEXT.you + " ");
      prefix.lang = interfaceText.locale;
      item.appendChild(prefix);
    }
    var p = el("p", "ciw-text");
    // Each message keeps its own direction: after a switch to Arabic, earlier Polish
    // messages still read left to right (their punctuation stays at the end).
    p.dir = "auto";
    appendText(p, text);
    item.appendChild(p);
    if (role !== "user") {
      appendLinks(item, links);
    }
    ui.log.appendChild(item);
    return item;
  }

  /** The summary step's rows as a GOV.UK "check your answers" list (the summary list
   *  pattern: dl, a dt and dd per answer), each changeable row with a Change button whose
   *  name says which answer ("Change When"). Built as elements; every text is textContent. */
  function addSummary(rows) {
    var item = el("div", "ciw-msg ciw-msg--bot ciw-msg--summary");
    item.setAttribute("data-role", "bot");
    var list = el("dl", "ciw-summary");
    rows.forEach(function (row) {
      if (!row || row.step == null) {
        return;
      }
      var label = String(row.label == null ? "" : row.label);
      var line = el("div", "ciw-summary-row");
      line.setAttribute("data-step", String(row.step));
      var key = el("dt", "ciw-summary-key", label);
      key.dir = "auto";
      var value = el("dd", "ciw-summary-value", String(row.value == null ? "" : row.value));
      // Each answer keeps its own direction: a Polish name in an Arabic summary reads LTR.
      value.dir = "auto";
      line.appendChild(key);
      line.appendChild(value);
      if (row.changeable === true) {
        var actions = el("dd", "ciw-summary-actions");
        var button = el("button", "ciw-summary-change");
        button.type = "button";
        button.setAttribute("data-change-step", String(row.step));
        button.appendChild(el("span", "ciw-summary-change-word", TEXT.change));
        button.appendChild(el("span", "ciw-visually-hidden", " " + label));
        actions.appendChild(button);
        line.appendChild(actions);
      } else {
        line.classList.add("ciw-summary-row--no-actions");
      }
      list.appendChild(line);
    });
    item.appendChild(list);
    ui.log.appendChild(item);
    return item;
  }

  /** An earlier summary is history: its Change buttons go (the server would only say that
   *  button was for an earlier question). `keepLast`: the newest is the current question. */
  function retireSummaries(keepLast) {
    var lists = ui.log.querySelectorAll(".ciw-msg--summary");
    Array.prototype.forEach.call(lists, function (item, index) {
      if (keepLast && index === lists.length - 1) {
        return;
      }
      Array.prototype.forEach.call(item.querySelectorAll(".ciw-summary-actions"), function (dd) {
        dd.parentNode.classList.add("ciw-summary-row--no-actions");
        dd.parentNode.removeChild(dd);
      });
    });
  }

  /** One of the server's messages: the summary as its list; a question being changed puts
   *  its current answer (`value`) in the box instead of a bubble (see prefill); else text. */
  function addBotMessage(message) {
    if (message && Array.isArray(message.summary) && message.summary.length) {
      return addSummary(message.summary);
    }
    if (message && typeof message.value === "string") {
      return null;
    }
    return addMessage("bot", message ? message.text : "", message ? message.links : null);
  }

  /** A question being changed: its answer as it is now, in the box, to fix rather than
   *  type again. Returns whether it did. */
  function prefill(reply) {
    var messages = reply.messages || [];
    var last = messages[messages.length - 1];
    if (ui.composer.hidden || reply.done || !last || typeof last.value !== "string") {
      return false;
    }
    ui.textarea.value = last.value;
    autoGrow();
    return true;
  }

  function applyLanguage(reply) {
    if (!reply) {
      return;
    }
    var dir = reply.dir === "rtl" ? "rtl" : "ltr";
    ui.panel.dir = dir;
    if (reply.locale) {
      [ui.log, ui.choices, ui.textarea, ui.done].forEach(function (node) {
        node.lang = reply.locale;
      });
      wantInterfaceText(reply.locale);
    }
  }

  // ------------------------------------------------------------------ the widget's own words

  var interfaceText = {
    locale: "en", // the language the chrome is in now
    wanted: null, // the language last asked for ("" = the server chooses from Accept-Language)
    fetched: {}, // locale -> the server's answer, so switching back needs no request
  };

  /** Show the chrome in `locale` (null: the browser's language, as the server negotiates it).
   *  Answers that arrive after a newer wish are kept for later but not shown. */
  function wantInterfaceText(locale) {
    var key = locale || "";
    if (key === interfaceText.wanted) {
      return;
    }
    interfaceText.wanted = key;
    if (key && key === interfaceText.locale) {
      return;
    }
    if (key && interfaceText.fetched[key]) {
      applyInterfaceText(interfaceText.fetched[key]);
      return;
    }
    var path = "/api/v1/ui-text" + (key ? "?locale=" + encodeURIComponent(key) : "");
    window.fetch(apiBase + path, {
      method: "GET",
      headers: { Accept: "application/json" },
      mode: "cors",
      credentials: "omit",
    }).then(function (response) {
      return response.ok ? response.json() : null;
    }).then(function (answer) {
      if (!answer || typeof answer.locale !== "string" || !answer.text || typeof answer.text !== "object") {
        throw new Error("no interface text");
      }
      interfaceText.fetched[answer.locale] = answer;
      if (key) {
        interfaceText.fetched[key] = answer;
      }
      if (interfaceText.wanted === key) {
        applyInterfaceText(answer);
      }
    }).catch(function () {
      // Offline, refused or busy: stay in the language shown now; the next reply asks again.
      if (interfaceText.wanted === key) {
        interfaceText.wanted = null;
      }
    });
  }

  function applyInterfaceText(answer) {
    Object.keys(DEFAULT_TEXT).forEach(function (key) {
      var value = answer.text[key];
      TEXT[key] = typeof value === "string" && value ? value : DEFAULT_TEXT[key];
    });
    if (customTitle) {
      TEXT.title = customTitle;
    }
    var dir = answer.dir === "rtl" ? "rtl" : "ltr";
    interfaceText.locale = answer.locale;
    [document.documentElement, ui.root, ui.panel].forEach(function (node) {
      node.lang = answer.locale;
      node.dir = dir;
    });
    ui.root.setAttribute("data-ui-locale", answer.locale);
    refreshChrome();
  }

  /** Put the current TEXT into everything already on screen, in place: nothing is rebuilt,
   *  so the conversation, what is typed and where the focus is all stay as they were.
   *  Messages already in the log are history and stay as they were said (changing them would
   *  make the live log announce them all again). */
  function refreshChrome() {
    ui.title.textContent = TEXT.title;
    ui.close.setAttribute("aria-label", TEXT.close);
    ui.toolbar.setAttribute("aria-label", TEXT.toolbar);
    COMMANDS.forEach(function (command) {
      if (command === "language") {
        languageLabel(ui.tools[command]);
      } else {
        ui.tools[command].textContent = TEXT[command];
      }
    });
    ui.exit.textContent = TEXT.exit;
    ui.exitHint.textContent = TEXT.exitHint;
    ui.danger.textContent = TEXT.danger;
    confirmWords(state.confirming || "cancel");
    ui.body.setAttribute("aria-label", TEXT.conversation);
    ui.log.setAttribute("aria-label", TEXT.conversation);
    ui.choices.setAttribute("aria-label", TEXT.answers);
    ui.refLabel.textContent = TEXT.referenceLabel;
    ui.copy.textContent = state.copied ? TEXT.copied : TEXT.copy;
    ui.fresh.textContent = TEXT.newConversation;
    ui.label.textContent = TEXT.answerLabel;
    ui.textarea.placeholder = TEXT.placeholder;
    ui.hint.textContent = TEXT.hint;
    ui.send.textContent = TEXT.send;
    Array.prototype.forEach.call(ui.log.querySelectorAll(".ciw-summary-change-word"), function (word) {
      word.textContent = TEXT.change;
    });
    if (state.statusKey && ui.status.textContent) {
      ui.status.textContent = TEXT[state.statusKey];
    }
    refreshAlert();
  }

  function collectControls(messages) {
    var seen = {};
    var choices = [];
    var input = "none";
    (messages || []).forEach(function (message) {
      (message.choices || []).forEach(function (choice) {
        if (choice && choice.id != null && !seen[choice.id]) {
          seen[choice.id] = true;
          choices.push({ id: String(choice.id), label: String(choice.label == null ? choice.id : choice.label) });
        }
      });
      if (message.input === "text") {
        input = "text";
      } else if (message.input === "choice" && input === "none") {
        input = "choice";
      }
    });
    return { choices: choices, input: input };
  }

  var turns = 0;

  /** Count replies on the root (data-turn), so a page or a test can tell a new one arrived. */
  function countTurn() {
    turns += 1;
    ui.root.setAttribute("data-turn", String(turns));
  }

  /** After the report is sent: the survey offer's two buttons (the conversation is done, so
   *  nothing else is offered). Returns whether there is an offer. */
  function renderSurveyOffer(reply) {
    var offer = reply.done && reply.survey_offer;
    if (!offer || !Array.isArray(offer.choices)) {
      return false;
    }
    offer.choices.forEach(function (choice) {
      if (choice && (choice.id === "survey_start" || choice.id === "survey_decline")) {
        var button = el("button", "ciw-choice", String(choice.label));
        button.type = "button";
        button.setAttribute("data-choice-id", choice.id);
        ui.choices.appendChild(button);
      }
    });
    return ui.choices.children.length > 0;
  }

  /** The offer's words, said after the confirmation (live and on a reload alike). */
  function addSurveyOffer(reply) {
    if (reply.done && reply.survey_offer && typeof reply.survey_offer.text === "string") {
      return addMessage("bot", reply.survey_offer.text);
    }
    return null;
  }

  function renderControls(reply) {
    var controls = collectControls(reply.messages);
    ui.choices.textContent = "";
    var offered = renderSurveyOffer(reply);
    if (!reply.done) {
      controls.choices.forEach(function (choice) {
        var button = el("button", "ciw-choice", choice.label);
        button.type = "button";
        button.setAttribute("data-choice-id", choice.id);
        if (reply.step === "language" && NATIVE_NAMES[choice.id]) {
          // Each language's name in its own language: pronounced (and shaped) as itself.
          button.lang = choice.id;
          button.dir = RTL_LOCALES[choice.id] ? "rtl" : "ltr";
        }
        ui.choices.appendChild(button);
      });
    }
    ui.choices.hidden = offered ? false : reply.done || controls.choices.length === 0;
    ui.composer.hidden = reply.done || controls.input !== "text";
    if (!ui.composer.hidden) {
      autoGrow();
    }
    ui.done.hidden = !reply.done;
    if (reply.done && reply.reference) {
      ui.refValue.textContent = reply.reference;
      ui.refBox.hidden = false;
    } else {
      ui.refValue.textContent = "";
      ui.refBox.hidden = true;
    }
    state.copied = false;
    ui.copy.textContent = TEXT.copy;
    ui.root.setAttribute("data-step", reply.step || "");
    ui.root.setAttribute("data-done", reply.done ? "true" : "false");
    // Once a conversation is over the server answers every command with "already sent" (or
    // nothing is left to act on): those buttons would do nothing, so they go. What still
    // works stays: copy the reference, start a new conversation, close, exit.
    ui.toolbar.hidden = !!reply.done;
  }

  function scrollToMessage(item) {
    if (!item) {
      ui.body.scrollTop = ui.body.scrollHeight;
      return;
    }
    var top = item.offsetTop - ui.body.offsetTop - 8;
    if (typeof ui.body.scrollTo === "function") {
      ui.body.scrollTo({ top: Math.max(0, top), behavior: prefersReducedMotion() ? "auto" : "smooth" });
    } else {
      ui.body.scrollTop = Math.max(0, top);
    }
  }

  function focusNext() {
    // In a frame, only while the person is in it: a late reply must not pull the focus away
    // from whatever they went on to do on the page around it.
    if (embedded && !document.hasFocus()) {
      return;
    }
    var target = null;
    var choiceCount = ui.choices.hidden ? 0 : ui.choices.children.length;
    if (!ui.done.hidden) {
      // Sent: the reference comes first (the survey offer's buttons follow it).
      target = !ui.refBox.hidden ? ui.copy : (choiceCount > 0 ? ui.choices.firstElementChild : ui.fresh);
      target.focus({ preventScroll: true });
      return;
    }
    // A text question with at most one extra button (Skip) is answered by typing: focus the
    // box. Otherwise (a list of options, or matches to pick from) focus the first option.
    if (!ui.composer.hidden && choiceCount <= 1) {
      target = ui.textarea;
    } else if (choiceCount > 0) {
      target = ui.choices.firstElementChild;
    } else if (!ui.composer.hidden) {
      target = ui.textarea;
    } else if (!ui.done.hidden) {
      target = ui.refBox.hidden ? ui.fresh : ui.copy;
    }
    if (target) {
      target.focus({ preventScroll: true });
    }
  }

  /** A live reply: its messages are new, so add them, then move focus to the next control. */
  function renderReply(reply, moveFocus) {
    state.lastReply = reply;
    applyLanguage(reply);
    var first = null;
    retireSummaries(false);
    (reply.messages || []).forEach(function (message) {
      var item = addBotMessage(message);
      first = first || item;
    });
    addSurveyOffer(reply);
    renderControls(reply);
    prefill(reply);
    scrollToMessage(first);
    if (moveFocus) {
      focusNext();
    }
    countTurn();
  }

  /** A resumed conversation: show the transcript, which already ends with the current prompt. */
  function renderResumed(reply) {
    state.lastReply = reply;
    applyLanguage(reply);
    ui.log.textContent = "";
    var transcript = reply.transcript || [];
    if (!transcript.length) {
      (reply.messages || []).forEach(function (message) { addBotMessage(message); });
    }
    transcript.forEach(function (entry) {
      if (!entry) {
        return;
      }
      var text = entry.text;
      if (entry.role === "user" && entry.kind === "command" && COMMANDS.indexOf(entry.value) >= 0) {
        text = TEXT[entry.value];
      }
      if (entry.role === "user" && (text == null || text === "")) {
        return;
      }
      if (entry.role === "user") {
        addMessage("user", text);
      } else {
        addBotMessage(entry);
      }
    });
    retireSummaries(reply.step === "summary" && !reply.done);
    addSurveyOffer(reply);
    renderControls(reply);
    var draft = loadDraft();
    if (draft && !ui.composer.hidden && !ui.textarea.value) {
      ui.textarea.value = draft;
      autoGrow();
    } else if (!ui.textarea.value) {
      prefill(reply);
    }
    ui.body.scrollTop = ui.body.scrollHeight;
    countTurn();
  }

  function setBusy(busy) {
    state.busy = busy;
    ui.typing.hidden = !busy;
    ui.panel.setAttribute("aria-busy", busy ? "true" : "false");
    ui.textarea.readOnly = busy || !!state.pending;
    var buttons = ui.panel.querySelectorAll(".ciw-choice, .ciw-tool, .ciw-send");
    for (var i = 0; i < buttons.length; i++) {
      if (busy || state.pending) {
        buttons[i].setAttribute("aria-disabled", "true");
      } else {
        buttons[i].removeAttribute("aria-disabled");
      }
    }
    if (busy) {
      ui.body.scrollTop = ui.body.scrollHeight;
    }
  }

  // ------------------------------------------------------------------ alerts and retries

  function clearAlert() {
    state.alertSpec = null;
    ui.alert.textContent = "";
    ui.alert.classList.remove("ciw-alert--shown");
  }

  /** A message as a TEXT key, or {key, raw}: the server's own (English) words, shown only
   *  while the interface is in English, else the translated words of `key`. */
  function messageText(message) {
    if (typeof message === "string") {
      return TEXT[message];
    }
    if (message.raw && interfaceText.locale === "en") {
      return message.raw;
    }
    return TEXT[message.key];
  }

  /** Show an error. `message`: see messageText. `action` = {labelKey, name, run} adds a button
   *  (Retry, Start a new conversation); `link` = {labelKey, href} adds a link. */
  function showAlert(message, action, link) {
    ui.alert.textContent = "";
    var spec = { message: message, action: action || null, link: link || null, nodes: {} };
    spec.nodes.text = el("p", "ciw-alert-text", messageText(message));
    ui.alert.appendChild(spec.nodes.text);
    if (link) {
      var a = el("a", "ciw-link", TEXT[link.labelKey]);
      a.href = link.href;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      var lp = el("p", "ciw-alert-text");
      lp.appendChild(a);
      ui.alert.appendChild(lp);
      spec.nodes.link = a;
    }
    if (action) {
      var button = el("button", "ciw-button ciw-button--secondary ciw-retry", TEXT[action.labelKey]);
      button.type = "button";
      button.setAttribute("data-action", action.name || "");
      button.addEventListener("click", action.run);
      ui.alert.appendChild(button);
      spec.nodes.button = button;
    }
    state.alertSpec = spec;
    ui.alert.classList.add("ciw-alert--shown");
  }

  /** The alert shown now, in the current language (same nodes, so focus stays put). */
  function refreshAlert() {
    var spec = state.alertSpec;
    if (!spec) {
      return;
    }
    spec.nodes.text.textContent = messageText(spec.message);
    if (spec.nodes.link) {
      spec.nodes.link.textContent = TEXT[spec.link.labelKey];
    }
    if (spec.nodes.button) {
      spec.nodes.button.textContent = TEXT[spec.action.labelKey];
    }
  }

  function clearRetryTimer() {
    if (state.retryTimer) {
      window.clearTimeout(state.retryTimer);
      state.retryTimer = null;
    }
    state.retryAction = null;
  }

  function backoff(attempt) {
    return Math.min(30000, 2000 * Math.pow(2, Math.max(0, attempt - 1)));
  }

  /** Retry `run` after `delay` ms, showing `message` with a Retry button that retries now. */
  function scheduleRetry(run, delay, message, auto) {
    clearRetryTimer();
    var retryNow = function () {
      clearRetryTimer();
      clearAlert();
      run();
    };
    state.retryAction = retryNow;
    showAlert(message, { labelKey: "retry", name: "retry", run: retryNow });
    if (auto) {
      state.retryTimer = window.setTimeout(retryNow, delay);
    }
  }

  function retryAfterMs(response) {
    var header = response.headers && response.headers.get("Retry-After");
    var seconds = header ? parseInt(header, 10) : NaN;
    if (isNaN(seconds) && header) {
      var when = Date.parse(header);
      if (!isNaN(when)) {
        seconds = Math.ceil((when - Date.now()) / 1000);
      }
    }
    if (isNaN(seconds) || seconds < 1) {
      seconds = 5;
    }
    return Math.min(seconds, 300) * 1000;
  }

  function showNotAllowed() {
    showAlert("notAllowed", null, { labelKey: "notAllowedLink", href: apiBase + "/" });
    ui.root.setAttribute("data-error", "origin_not_allowed");
  }

  function showExpired() {
    clearSession();
    state.conversationId = null;
    state.token = null;
    showAlert("expired", { labelKey: "newConversation", name: "new", run: function () { startNew(true); } });
  }

  // ------------------------------------------------------------------ conversation lifecycle

  function startConversation(moveFocus) {
    state.started = true;
    setBusy(true);
    var body = startLocale ? { locale: startLocale } : {};
    return request("POST", "/api/v1/conversations", body).then(function (response) {
      setBusy(false);
      if (response.ok && response.data && response.data.conversation_id) {
        clearAlert();
        ui.root.removeAttribute("data-error");
        state.conversationId = response.data.conversation_id;
        state.token = response.data.token;
        saveSession(state.conversationId, state.token);
        renderReply(response.data, moveFocus);
        return;
      }
      var info = errorInfo(response);
      if (response.status === 403 && info.code === "origin_not_allowed") {
        showNotAllowed();
      } else if (response.status === 429) {
        var wait = retryAfterMs(response);
        scheduleRetry(function () { startConversation(moveFocus); }, wait,
          "rateLimited", true);
      } else if (response.status >= 500) {
        scheduleRetry(function () { startConversation(moveFocus); }, 4000, "busy", true);
      } else {
        showAlert(serverMessage(info), { labelKey: "retry", name: "retry", run: function () { clearAlert(); startConversation(moveFocus); } });
      }
    }, failedToReach(function () { startConversation(moveFocus); }));
  }

  // The request never got an answer (the API is on our own origin, so this is not CORS):
  // we are offline or the server is down. Say so and offer Retry.
  function failedToReach(retry) {
    return function () {
      setBusy(false);
      scheduleRetry(retry, 0, "cannotConnect", false);
    };
  }

  function resumeConversation(saved) {
    state.started = true;
    setBusy(true);
    return request("GET", "/api/v1/conversations/" + encodeURIComponent(saved.conversation_id), undefined, saved.token)
      .then(function (response) {
        setBusy(false);
        if (response.ok && response.data) {
          clearAlert();
          state.conversationId = saved.conversation_id;
          state.token = saved.token;
          renderResumed(response.data);
          return;
        }
        if (response.status === 401 || response.status === 404) {
          clearSession();
          return startConversation(false);
        }
        var info = errorInfo(response);
        if (response.status === 403 && info.code === "origin_not_allowed") {
          showNotAllowed();
        } else {
          scheduleRetry(function () { resumeConversation(saved); }, 4000,
            response.status >= 500 ? "busy" : serverMessage(info), response.status >= 500 || response.status === 429);
        }
      }, failedToReach(function () { resumeConversation(saved); }));
  }

  /** The survey about the chat, in the same panel: a new conversation (its own token) asked
   *  for with the sent conversation's token. Refused (409: taken, declined or closed): the
   *  offer goes and the server's words say why. */
  function startSurvey(offer, echo) {
    if (state.busy || state.pending || !state.token) {
      return;
    }
    clearAlert();
    setBusy(true);
    var body = { survey_for: String(offer.conversation_id) };
    return request("POST", "/api/v1/conversations", body, state.token).then(function (response) {
      setBusy(false);
      if (response.ok && response.data && response.data.conversation_id) {
        state.conversationId = response.data.conversation_id;
        state.token = response.data.token;
        saveSession(state.conversationId, state.token);
        addMessage("user", echo);
        renderReply(response.data, true);
        return;
      }
      var info = errorInfo(response);
      if (response.status === 409) {
        ui.choices.textContent = "";
        ui.choices.hidden = true;
      }
      showAlert(serverMessage(info));
    }, function () {
      setBusy(false);
      scheduleRetry(function () { startSurvey(offer, echo); }, 0, "cannotConnect", false);
    });
  }

  function startNew(moveFocus) {
    if (state.busy) {
      return;
    }
    clearRetryTimer();
    clearAlert();
    state.pending = null;
    clearSession();
    state.conversationId = null;
    state.token = null;
    ui.log.textContent = "";
    ui.textarea.value = "";
    renderControls({ messages: [], done: false, reference: null, step: "" });
    startConversation(moveFocus);
  }

  function ensureStarted() {
    if (state.started) {
      return;
    }
    var saved = loadSession();
    if (saved) {
      resumeConversation(saved);
    } else {
      startConversation(!ui.panel.hidden && ui.panel.contains(document.activeElement));
    }
  }

  // ------------------------------------------------------------------ sending

  function send(payload, echo) {
    if (state.busy || state.pending || !state.conversationId) {
      return;
    }
    hideConfirm(false);
    state.pending = { payload: payload, echo: echo, id: uuid(), attempts: 0 };
    attemptSend();
  }

  function attemptSend() {
    var pending = state.pending;
    if (!pending) {
      return;
    }
    pending.attempts += 1;
    clearRetryTimer();
    setBusy(true);
    var body = { client_message_id: pending.id };
    Object.keys(pending.payload).forEach(function (key) { body[key] = pending.payload[key]; });
    var path = "/api/v1/conversations/" + encodeURIComponent(state.conversationId) + "/messages";
    request("POST", path, body, state.token).then(function (response) {
      if (response.ok && response.data) {
        state.pending = null;
        setBusy(false);
        clearAlert();
        if (response.data.exit === true) {
          // The person typed the exit word: the server has closed the conversation and kept
          // nothing; leave as the Exit button does, showing nothing of the reply.
          quickExit();
          return;
        }
        if (Object.prototype.hasOwnProperty.call(pending.payload, "text")) {
          ui.textarea.value = "";
          saveDraft("");
          autoGrow();
        }
        var cancelled = pending.payload.command === "cancel" && response.data.done;
        if (cancelled) {
          forgetConversation();
        } else if (pending.echo) {
          addMessage("user", pending.echo);
        }
        renderReply(response.data, true);
        return;
      }
      var info = errorInfo(response);
      if (response.status === 429) {
        var wait = retryAfterMs(response);
        setBusy(false);
        scheduleRetry(attemptSend, wait, "rateLimited", true);
      } else if (response.status >= 500) {
        setBusy(false);
        var delay = response.headers.get("Retry-After") ? retryAfterMs(response) : backoff(pending.attempts);
        scheduleRetry(attemptSend, delay, "busy", pending.attempts < 8);
      } else {
        // A 4xx other than 429: sending it again will not help. Keep what was typed.
        state.pending = null;
        setBusy(false);
        if (response.status === 401 || response.status === 404) {
          showExpired();
        } else if (response.status === 403 && info.code === "origin_not_allowed") {
          showNotAllowed();
        } else {
          showAlert(serverMessage(info));
        }
        if (!ui.composer.hidden) {
          ui.textarea.focus({ preventScroll: true });
        }
      }
    }, function () {
      setBusy(false);
      var auto = pending.attempts < 8;
      scheduleRetry(attemptSend, backoff(pending.attempts), auto ? "notSent" : "notSentManual", auto);
    });
  }

  function sendText() {
    if (state.busy || state.pending) {
      return;
    }
    var value = ui.textarea.value;
    send({ text: value }, value.trim() ? value : "");
  }

  // ------------------------------------------------------------------ textarea

  function autoGrow() {
    var textarea = ui.textarea;
    var styles = window.getComputedStyle(textarea);
    var line = parseFloat(styles.lineHeight) || 24;
    var padding = (parseFloat(styles.paddingTop) || 0) + (parseFloat(styles.paddingBottom) || 0);
    textarea.rows = 1;
    var needed = Math.ceil((textarea.scrollHeight - padding) / line);
    textarea.rows = Math.max(2, Math.min(6, needed || 2));
  }

  // ------------------------------------------------------------------ copy

  function copyReference() {
    var value = ui.refValue.textContent;
    var done = function () {
      state.copied = true;
      ui.copy.textContent = TEXT.copied;
      state.statusKey = "copiedStatus";
      ui.status.textContent = TEXT.copiedStatus;
    };
    var fallback = function () {
      var ok = false;
      try {
        var range = document.createRange();
        range.selectNodeContents(ui.refValue);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        ok = document.execCommand("copy");
      } catch (e) {
        ok = false;
      }
      if (ok) {
        done();
      } else {
        state.statusKey = "copyFailed";
        ui.status.textContent = TEXT.copyFailed;
        showAlert("copyFailed");
      }
    };
    if (navigator.clipboard && typeof navigator.clipboard.writeText === "function") {
      navigator.clipboard.writeText(value).then(done, fallback);
    } else {
      fallback();
    }
  }

  // ------------------------------------------------------------------ the embedding page

  /** Tell the embedding page something. Only the loader's origin can receive it, and all it
   *  ever carries is open or closed. */
  function tellHost(event, extra) {
    if (!embedded) {
      return;
    }
    var message = { type: MESSAGE_TYPE, event: event };
    Object.keys(extra || {}).forEach(function (key) { message[key] = extra[key]; });
    window.parent.postMessage(message, hostOrigin);
  }

  function fromHost(event) {
    if (!embedded || event.source !== window.parent || event.origin !== hostOrigin) {
      return;
    }
    var message = event.data;
    if (!message || message.type !== MESSAGE_TYPE) {
      return;
    }
    if (message.event === "open") {
      opened(message.focus === true);
    } else if (message.event === "exit") {
      quickExit();
    }
  }

  // ------------------------------------------------------------------ open and close

  /** The page shows the frame: start (or resume) the conversation; move focus in if asked. */
  function opened(moveFocus) {
    if (moveFocus) {
      if (state.lastReply) {
        focusNext();
      } else {
        ui.title.focus({ preventScroll: true });
      }
    }
    ensureStarted();
  }

  function closePanel() {
    hideConfirm(false);
    tellHost("close");
  }

  // ------------------------------------------------------------------ cancel, confirmed

  /** The confirmation's words for `command` ("cancel" or "restart"); "No, carry on" is shared. */
  function confirmWords(command) {
    var restart = command === "restart";
    ui.confirmTitle.textContent = restart ? TEXT.restartTitle : TEXT.cancelTitle;
    ui.confirmText.textContent = restart ? TEXT.restartText : TEXT.cancelText;
    ui.stop.textContent = restart ? TEXT.restartConfirm : TEXT.cancelConfirm;
    ui.keep.textContent = TEXT.cancelKeep;
    ui.stop.setAttribute("data-action", command + "-confirm");
    ui.keep.setAttribute("data-action", command + "-keep");
  }

  /** Cancel erases the whole conversation and Start again erases the answers so far, so each
   *  asks once, in the same confirmation, saying what will be lost. */
  function askToConfirm(command) {
    if (state.busy || state.pending || !state.conversationId) {
      return;
    }
    if (state.confirming && state.confirming !== command) {
      hideConfirm(false);
    }
    state.confirming = command;
    confirmWords(command);
    ui.confirm.hidden = false;
    ui.tools[command].setAttribute("aria-expanded", "true");
    ui.body.scrollTop = ui.body.scrollHeight;
    ui.keep.focus({ preventScroll: true });
  }

  function hideConfirm(restoreFocus) {
    if (ui.confirm.hidden) {
      return;
    }
    var command = state.confirming || "cancel";
    ui.confirm.hidden = true;
    state.confirming = null;
    ui.tools[command].setAttribute("aria-expanded", "false");
    if (restoreFocus) {
      ui.tools[command].focus({ preventScroll: true });
    }
  }

  // ------------------------------------------------------------------ exit this page

  var exitShift = { count: 0, timer: null };

  /** The address "Exit this page" goes to: the server's INTAKE_EXIT_URL, else the default. */
  function exitUrl() {
    var answer = interfaceText.fetched[interfaceText.locale];
    var url = answer && typeof answer.exit_url === "string" ? answer.exit_url : "";
    return /^https?:\/\/[^\s]+$/.test(url) ? url : DEFAULT_EXIT_URL;
  }

  /** Leave at once: nothing of the chat stays on screen or in this origin's storage (so Back
   *  does not bring it back), then the whole page goes to a neutral site. In a frame only the
   *  loader can move the page, so it is asked to. Browser history is not erased (the hint
   *  says so). The conversation on the server is left as it is: it expires on its own. */
  function quickExit() {
    clearSession();
    clearRetryTimer();
    state.pending = null;
    state.conversationId = null;
    state.token = null;
    ui.textarea.value = "";
    ui.log.textContent = "";
    ui.root.hidden = true;
    ui.root.setAttribute("data-exited", "true");
    if (embedded) {
      tellHost("exit");
    } else {
      window.location.replace(exitUrl());
    }
  }

  /** Shift, Shift, Shift (and no other key between) within 5 seconds: exit. */
  function countShift(event) {
    if (event.key !== "Shift") {
      exitShift.count = 0;
      window.clearTimeout(exitShift.timer);
      exitShift.timer = null;
      return;
    }
    exitShift.count += 1;
    if (exitShift.count >= EXIT_SHIFT_PRESSES) {
      exitShift.count = 0;
      quickExit();
      return;
    }
    if (!exitShift.timer) {
      exitShift.timer = window.setTimeout(function () {
        exitShift.count = 0;
        exitShift.timer = null;
      }, EXIT_SHIFT_WINDOW_MS);
    }
  }

  /** After a cancel nothing is kept here either: the token, the id and the draft go, and
   *  what was said leaves the screen (someone may be looking over a shoulder). */
  function forgetConversation() {
    clearSession();
    state.conversationId = null;
    state.token = null;
    ui.textarea.value = "";
    ui.log.textContent = "";
  }

  // ------------------------------------------------------------------ events

  function wire() {
    ui.close.addEventListener("click", closePanel);
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" || event.key === "Esc") {
        event.preventDefault();
        if (!ui.confirm.hidden) {
          hideConfirm(true);
        } else {
          closePanel();
        }
      }
    });
    ui.choices.addEventListener("click", function (event) {
      var button = event.target.closest ? event.target.closest(".ciw-choice") : null;
      if (!button || !ui.choices.contains(button)) {
        return;
      }
      var choiceId = button.getAttribute("data-choice-id");
      if (choiceId === "survey_start" && state.lastReply && state.lastReply.survey_offer) {
        startSurvey(state.lastReply.survey_offer, button.textContent);
        return;
      }
      send({ choice: choiceId }, button.textContent);
    });
    ui.log.addEventListener("click", function (event) {
      var button = event.target.closest ? event.target.closest(".ciw-summary-change") : null;
      if (!button || !ui.log.contains(button)) {
        return;
      }
      // A row's step id is a choice at the summary: straight to that answer.
      var row = button.closest(".ciw-summary-row");
      var label = row ? row.querySelector(".ciw-summary-key").textContent : "";
      send({ choice: button.getAttribute("data-change-step") }, label);
    });
    Object.keys(ui.tools).forEach(function (command) {
      ui.tools[command].addEventListener("click", function () {
        if (!state.conversationId) {
          // Cancelled: there is nothing to go back in, but starting again still makes sense.
          if (command === "restart" && state.started) {
            startNew(true);
          }
          return;
        }
        if (command === "cancel" || command === "restart") {
          askToConfirm(command);
          return;
        }
        hideConfirm(false);
        send({ command: command }, TEXT[command]);
      });
    });
    ui.keep.addEventListener("click", function () { hideConfirm(true); });
    ui.stop.addEventListener("click", function () {
      var command = state.confirming || "cancel";
      hideConfirm(false);
      send({ command: command }, TEXT[command]);
    });
    ui.exit.addEventListener("click", quickExit);
    document.addEventListener("keyup", countShift);
    ui.composer.addEventListener("submit", function (event) {
      event.preventDefault();
      sendText();
    });
    ui.textarea.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        sendText();
      }
    });
    ui.textarea.addEventListener("input", function () {
      autoGrow();
      saveDraft(ui.textarea.value);
    });
    ui.copy.addEventListener("click", copyReference);
    ui.fresh.addEventListener("click", function () { startNew(true); });
    window.addEventListener("online", function () {
      if (state.retryAction) {
        state.retryAction();
      }
    });
    window.addEventListener("message", fromHost);
  }

  function init() {
    build();
    wire();
    // The panel in the page's language (data-locale), else the browser's; the first reply
    // then asks for the conversation's own language if that differs.
    wantInterfaceText(startLocale);
    var saved = loadSession();
    if (!embedded) {
      // Opened on its own: the page is the chat; there is nothing to close it into.
      ui.close.hidden = true;
      opened(false);
    } else if (saved) {
      // A conversation in progress: the page shows the frame again, where the person left off.
      tellHost("ready", { open: true });
      opened(false);
    } else {
      tellHost("ready", { open: false });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
