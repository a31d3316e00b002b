// What every page of ours does the same way: the user's token from the link, the language, the
// static strings of the document. Used by the call page and the media page.

/**
 * The token is in the fragment, which browsers never send to the server. Once read, it leaves
 * the address bar (not in history or screenshots) but stays in this tab's session storage for a
 * reload.
 */
export function readToken() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  let token = params.get('token');
  const key = `klass-token:${location.pathname}`;
  try {
    if (token) {
      sessionStorage.setItem(key, token);
      history.replaceState(null, '', location.pathname + location.search);
    } else {
      token = sessionStorage.getItem(key);
    }
  } catch (_) {
    // Storage may be disabled; the token in hand is enough for this load.
  }
  return token;
}

/** 'en' when the browser ranks English before French, else 'fr'. */
export function preferredLanguage() {
  const wanted = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'fr'];
  for (const tag of wanted) {
    const base = String(tag).toLowerCase().split('-')[0];
    if (base === 'fr') return 'fr';
    if (base === 'en') return 'en';
  }
  return 'fr';
}

/** The document's language and title, `data-text` contents and `data-label` names from `S`. */
export function applyStrings(root, S, lang) {
  document.documentElement.lang = lang;
  document.title = S.title;
  for (const el of root.querySelectorAll('[data-text]')) el.textContent = S[el.dataset.text];
  for (const el of root.querySelectorAll('[data-label]')) el.setAttribute('aria-label', S[el.dataset.label]);
}
