// The agent's capture app. Plain JS, no build step, no network beyond this unit's own API.
// Frames never reach the page: the capture screen draws the face's box from the guidance
// events. Strings come from i18n.json, keyed by the API's stable reason codes.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const state = { cat: null, lang: "en", defaultLang: "en", consentVersion: null, ref: "",
                  session: null, events: null, last: null, info: null, online: true };

  // ---- strings ------------------------------------------------------------------------
  function t(key, params) {
    const m = state.cat.messages;
    let s = (m[state.lang] && m[state.lang][key]) || m.en[key] || key;
    for (const [k, v] of Object.entries(params || {})) s = s.split("{" + k + "}").join(String(v));
    return s;
  }
  function reasonText(code, fallback) {
    const key = "reason." + code;
    if (state.cat.messages.en[key]) return t(key);
    if (fallback) return fallback;  // a code this catalogue does not know yet: the daemon's own words
    return t("reason.unknown", { code: code });
  }
  function applyLanguage(lang) {
    state.lang = state.cat.languages[lang] ? lang : "en";
    const meta = state.cat.languages[state.lang];
    document.documentElement.lang = state.lang;
    document.documentElement.dir = meta.dir;
    document.title = t("ui.title");
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    $("consent-version").textContent = t("ui.consent.version", { v: state.consentVersion || "?" });
    $("lang").value = state.lang;
    renderOffline();
    if (state.last) render(state.last);
    renderToday(state.today || []);
  }

  // ---- screens --------------------------------------------------------------------------
  function show(name) {
    document.querySelectorAll(".screen").forEach((s) => { s.hidden = s.id !== "screen-" + name; });
    const h = document.querySelector("#screen-" + name + " h2");
    if (h) h.focus();
    document.body.dataset.screen = name;
  }

  // ---- API ------------------------------------------------------------------------------
  async function api(method, path, body) {
    const opts = { method: method, headers: {}, cache: "no-store" };
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    const r = await fetch(path, opts);
    const data = r.status === 204 ? {} : await r.json();
    if (!r.ok) { const e = new Error((data.error && data.error.message) || r.statusText); e.code = (data.error && data.error.code) || "unknown"; throw e; }
    return data;
  }

  // ---- reference ------------------------------------------------------------------------
  function onRef(ev) {
    ev.preventDefault();
    const ref = $("ref").value.trim();
    $("ref-error").textContent = "";
    if (!ref) { $("ref-error").textContent = t("reason.bad-reference"); $("ref").focus(); return; }
    state.ref = ref;
    $("consent-error").textContent = "";
    show("consent");
  }

  // ---- consent + session ----------------------------------------------------------------
  async function answer(accepted) {
    $("accept").disabled = $("decline").disabled = true;
    try {
      const s = await api("POST", "/v1/sessions", { ref: state.ref, consent: { version: state.consentVersion, accepted: accepted } });
      state.session = s.session;
      state.last = null;
      if (!accepted) { state.last = { event: "failed", reason: "consent-declined" }; render(state.last); show("result"); refreshToday(); return; }
      resetCapture();
      show("capture");
      listen(s.events);
      startPreview();
    } catch (e) {
      if (e.code === "bad-reference") { show("ref"); $("ref-error").textContent = reasonText(e.code); $("ref").focus(); }
      else { $("consent-error").textContent = reasonText(e.code); }
    } finally {
      $("accept").disabled = $("decline").disabled = false;
    }
  }

  function listen(url) {
    if (state.events) state.events.close();
    const es = new EventSource(url);
    state.events = es;
    const handle = (ev) => { const data = JSON.parse(ev.data); onEvent(data); };
    for (const name of ["started", "guidance", "prompt", "liveness", "captured", "queued", "receipt", "receipt-pending", "failed"]) {
      es.addEventListener(name, handle);
    }
  }

  function onEvent(ev) {
    if (ev.event === "started") return;
    if (["receipt", "receipt-pending", "failed"].includes(ev.event)) { state.events.close(); state.events = null; }
    state.last = ev;
    render(ev);
    if (ev.event === "captured") stopPreview();
    if (["queued", "receipt", "receipt-pending", "failed"].includes(ev.event)) { stopPreview(); show("result"); refreshToday(); }
  }

  const ICONS = {
    left: '<svg viewBox="0 0 48 48" width="64" height="64"><path d="M30 10 L16 24 L30 38" fill="none" stroke="currentColor" stroke-width="6" stroke-linecap="round" stroke-linejoin="round"/></svg>',
    right: '<svg viewBox="0 0 48 48" width="64" height="64"><path d="M18 10 L32 24 L18 38" fill="none" stroke="currentColor" stroke-width="6" stroke-linecap="round" stroke-linejoin="round"/></svg>',
    blink: '<svg viewBox="0 0 48 48" width="64" height="64"><path d="M4 24 Q24 6 44 24 Q24 42 4 24Z" fill="none" stroke="currentColor" stroke-width="4"/><path d="M8 30 Q24 40 40 30" fill="none" stroke="currentColor" stroke-width="4"/></svg>',
  };
  function promptIcon(code) {
    if (/turn-left/.test(code)) return ICONS.left;
    if (/turn-right/.test(code)) return ICONS.right;
    if (/blink/.test(code)) return ICONS.blink;
    return "";
  }

  // ---- operator-enabled preview: small JPEGs fetched no-store into blob URLs (memory) ----
  function startPreview() {
    stopPreview();
    if (!(state.info && state.info.app && state.info.app.preview)) return;
    const img = $("preview");
    state.previewTimer = setInterval(async () => {
      if (!state.session || document.body.dataset.screen !== "capture") return;
      try {
        const r = await fetch("/v1/sessions/" + state.session + "/preview", { cache: "no-store" });
        if (!r.ok) return;
        const url = URL.createObjectURL(await r.blob());
        const old = img.src;
        img.src = url;
        img.hidden = false;
        img.parentElement.classList.add("live");
        if (old.startsWith("blob:")) URL.revokeObjectURL(old);
      } catch (e) { /* the next tick tries again */ }
    }, 300);
  }
  function stopPreview() {
    if (state.previewTimer) { clearInterval(state.previewTimer); state.previewTimer = null; }
    const img = $("preview");
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.removeAttribute("src");
    img.hidden = true;
    img.parentElement.classList.remove("live");
  }

  function resetCapture() {
    $("guidance").textContent = "";
    $("prompt").innerHTML = "";
    $("face").setAttribute("visibility", "hidden");
  }

  function drawBox(box, ok) {
    const face = $("face");
    if (!box) { face.setAttribute("visibility", "hidden"); return; }
    const [x, y, w, h] = box;
    // mirrored, like a mirror: the customer moves left, the outline moves left
    face.setAttribute("x", String((1 - x - w) * 100));
    face.setAttribute("y", String(y * 75));
    face.setAttribute("width", String(w * 100));
    face.setAttribute("height", String(h * 75));
    face.setAttribute("class", ok ? "face ok" : "face");
    face.setAttribute("visibility", "visible");
  }

  function render(ev) {
    const main = $("result-main"), detail = $("result-detail");
    if (ev.event === "guidance" || ev.event === "prompt" || ev.event === "liveness") {
      $("guidance").textContent = reasonText(ev.reason || "unknown", ev.message);
      $("guidance").dataset.reason = ev.reason || "";
      const icon = promptIcon(ev.reason || "");
      $("prompt").innerHTML = icon;
      $("prompt").dataset.prompt = icon ? ev.reason : "";
      drawBox(ev.box, !!ev.ok);
      return;
    }
    if (ev.event === "captured") { $("guidance").textContent = reasonText("ok"); return; }
    main.className = "result-main";
    detail.textContent = "";
    document.body.dataset.outcome = ev.event;
    if (ev.event === "queued") { main.textContent = t("ui.queued"); return; }
    if (ev.event === "receipt-pending") { main.textContent = t("ui.pending"); return; }
    if (ev.event === "failed") { main.textContent = t("ui.failed"); main.classList.add("bad"); detail.textContent = reasonText(ev.reason); return; }
    if (ev.event === "receipt") {
      let key = "status." + ev.status;
      if (ev.status !== "rejected" && (ev.reason === "match" || ev.reason === "no-match")) key = "status." + ev.reason;
      main.textContent = t(key);
      main.classList.add(key === "status.match" || key === "status.accepted" ? "ok" : "bad");
      document.body.dataset.receipt = ev.reason || ev.status;
      if (!(ev.reason === "match" || ev.reason === "no-match") || ev.status === "rejected") detail.textContent = reasonText(ev.reason);
      else if (typeof ev.score === "number") detail.textContent = t("ui.score", { s: ev.score.toFixed(2), t: ev.threshold.toFixed(2) });
    }
  }

  async function cancel() {
    if (state.session) { try { await api("DELETE", "/v1/sessions/" + state.session); } catch (e) { /* already finished */ } }
  }

  function again() {
    if (state.events) { state.events.close(); state.events = null; }
    state.session = null; state.last = null; state.ref = "";
    document.body.dataset.outcome = ""; document.body.dataset.receipt = "";
    $("ref").value = "";
    show("ref");
    $("ref").focus();
  }

  // ---- link state and today's list ------------------------------------------------------
  function renderOffline() {
    const b = $("offline");
    if (!state.online) { b.textContent = t("ui.unit-unreachable"); b.hidden = false; return; }
    const info = state.info;
    const n = info && info.queue && typeof info.queue.count === "number" ? info.queue.count : 0;
    // the link first (nothing can be sent), then why a connected unit's registrations stay
    // queued: the carrier refused them before authenticating them (delivery, /v1/info)
    // (every held state of kycedge.protocol.status.DELIVERY_STATES has words: test_catalogue)
    const held = info && typeof info.delivery === "string" && info.delivery !== "ok"
      && state.cat.messages.en["ui.delivery." + info.delivery] ? info.delivery : "";
    b.dataset.delivery = held;
    if (info && info.link && info.link.connected === false) {
      b.textContent = t("ui.offline", { n: n });
    } else if (held) {
      b.textContent = t("ui.delivery." + held, { n: n });
    } else { b.hidden = true; return; }
    b.dataset.queue = String(n);
    b.hidden = false;
  }
  async function refreshInfo() {
    try { state.info = await api("GET", "/v1/info"); state.online = true; }
    catch (e) { state.online = false; }
    renderOffline();
  }
  function renderToday(items) {
    state.today = items;
    const body = document.querySelector("#today tbody");
    body.textContent = "";
    for (const s of items) {
      const tr = document.createElement("tr");
      const time = new Date(s.started_at * 1000).toLocaleTimeString(state.lang, { hour: "2-digit", minute: "2-digit" });
      let what = t("state." + s.state);
      if (s.state === "done" && s.reason) what = reasonText(s.reason);
      else if (s.state === "failed" && s.reason) what = reasonText(s.reason);
      for (const [text, ltr] of [[time, true], [s.ref_hint, true], [what, false]]) {
        const td = document.createElement("td");
        if (ltr) { const b = document.createElement("bdi"); b.dir = "ltr"; b.textContent = text; td.appendChild(b); }
        else td.textContent = text;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    $("today-empty").hidden = items.length > 0;
  }
  async function refreshToday() {
    try { renderToday((await api("GET", "/v1/sessions")).sessions); } catch (e) { /* the banner says so */ }
  }

  // ---- start ------------------------------------------------------------------------------
  async function boot() {
    state.cat = await (await fetch("i18n.json", { cache: "no-cache" })).json();
    const sel = $("lang");
    for (const [code, meta] of Object.entries(state.cat.languages)) {
      const o = document.createElement("option"); o.value = code; o.textContent = meta.name; o.lang = code; sel.appendChild(o);
    }
    sel.addEventListener("change", () => applyLanguage(sel.value));
    await refreshInfo();
    const app = state.info && state.info.app;
    state.consentVersion = (app && app.consent_version) || state.cat.consent_version;
    state.defaultLang = (app && app.language) || state.cat.default_language;
    applyLanguage(state.defaultLang);
    $("ref-form").addEventListener("submit", onRef);
    $("accept").addEventListener("click", () => answer(true));
    $("decline").addEventListener("click", () => answer(false));
    $("cancel").addEventListener("click", cancel);
    $("again").addEventListener("click", again);
    show("ref");
    $("ref").focus();
    refreshToday();
    setInterval(refreshInfo, 2000);
    setInterval(refreshToday, 5000);
    document.body.dataset.ready = "1";
  }
  boot();
})();
