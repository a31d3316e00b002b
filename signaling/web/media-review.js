// The teacher's review of one processed photo or video: the faces the detector found drawn as
// boxes over the blurred result (what families will see: a face left clear is a face it missed),
// for a video over the frame at the player's time; regions to blur in addition, drawn with the
// mouse or a finger, or typed in percent for the keyboard and screen readers (with a time range
// for videos); then the same file processed again with them (PUT .../regions).

import { S } from './media-strings.js';

const FOREVER = 1e300; // The server's default end of a region: the end of the video.
const MIN_DRAWN = 0.01; // A drawn rectangle smaller than 1 % of a side is a click, not a region.

const pct = (fraction) => Math.round(fraction * 1000) / 10;
const clamp01 = (v) => Math.min(1, Math.max(0, v));

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function boxNode(kind, rect) {
  const node = el('div', { class: `box box-${kind}`, 'data-kind': kind });
  node.style.left = `${rect.x * 100}%`;
  node.style.top = `${rect.y * 100}%`;
  node.style.width = `${rect.w * 100}%`;
  node.style.height = `${rect.h * 100}%`;
  return node;
}

/** The detection frame shown at `time`: the latest at or before it (the first one before any). */
function frameAt(frames, time) {
  let best = frames[0] || null;
  for (const frame of frames) {
    if (frame.time_s <= time + 1e-3) best = frame;
    else break;
  }
  return best;
}

/**
 * Renders the review of `media` (a MediaView with `links`) into `container`. `faces`: the
 * FacesView. `rerun(regions)` sends the regions and resolves once processing started.
 */
export function renderReview(container, { media, faces, label, rerun }) {
  const isVideo = media.kind === 'video';
  const frames = Array.isArray(faces.frames) ? faces.frames : [];
  const regions = (faces.manual_regions || []).map((r) => ({ ...r }));
  const nFaces = frames.reduce((n, frame) => n + frame.boxes.length, 0);

  const section = el('section', { class: 'review', 'data-media-id': media.media_id, 'aria-labelledby': `review-${media.media_id}` });
  section.append(el('h3', { id: `review-${media.media_id}`, text: S.reviewTitle(label) }));
  section.append(el('p', { class: 'faces-summary', 'data-faces': String(nFaces), text: S.facesFound(nFaces, frames.length) }));

  const picture = isVideo
    ? el('video', { src: media.links.view, poster: media.links.poster || undefined, preload: 'auto', muted: '', playsinline: '' })
    : el('img', { src: media.links.view, alt: label });
  if (isVideo) picture.muted = true;
  const overlay = el('div', { class: 'overlay', role: 'img', 'aria-label': S.drawArea(label) });
  const faceLayer = el('div', { class: 'layer' });
  const regionLayer = el('div', { class: 'layer' });
  overlay.append(faceLayer, regionLayer);
  const frameBox = el('div', { class: 'picture' }, picture, overlay);
  section.append(frameBox);

  const facesNow = el('p', { class: 'faces-now', 'aria-live': 'polite' });
  let seek = null;
  if (isVideo) {
    const play = el('button', { type: 'button', class: 'play', text: '▶', 'aria-label': S.playPause });
    play.addEventListener('click', () => (picture.paused ? picture.play() : picture.pause()));
    picture.addEventListener('play', () => (play.textContent = '⏸'));
    picture.addEventListener('pause', () => (play.textContent = '▶'));
    seek = el('input', { type: 'range', class: 'seek', min: '0', max: '0', step: '0.1', value: '0', 'aria-label': S.seek(label) });
    seek.addEventListener('input', () => {
      picture.currentTime = Number(seek.value);
    });
    picture.addEventListener('loadedmetadata', () => {
      seek.max = String(picture.duration || 0);
      if (!endField.value) endField.value = (picture.duration || 0).toFixed(1);
    });
    section.append(el('div', { class: 'video-tools' }, play, seek, facesNow));
  }
  section.append(el('p', { class: 'hint', text: S.reviewHint }));

  const drawFaces = () => {
    faceLayer.replaceChildren();
    const time = isVideo ? picture.currentTime || 0 : 0;
    const frame = frameAt(frames, time);
    const boxes = frame ? frame.boxes : [];
    for (const box of boxes) faceLayer.append(boxNode('face', box));
    if (isVideo) {
      facesNow.textContent = S.facesAt(boxes.length, (frame ? frame.time_s : 0).toFixed(1));
      if (seek && document.activeElement !== seek) seek.value = String(time);
    }
    section.dataset.facesShown = String(boxes.length);
  };
  const drawRegions = () => {
    regionLayer.replaceChildren();
    const time = isVideo ? picture.currentTime || 0 : 0;
    for (const region of regions) {
      if (isVideo && !(region.start_s <= time + 1e-3 && time <= region.end_s)) continue;
      regionLayer.append(boxNode('region', { x: region.x, y: region.y, w: region.width, h: region.height }));
    }
  };
  if (isVideo) {
    for (const event of ['timeupdate', 'seeked', 'loadeddata']) {
      picture.addEventListener(event, () => {
        drawFaces();
        drawRegions();
      });
    }
  }

  // The regions: a list (each removable) and a form.
  section.append(el('h4', { text: S.regionsTitle }));
  const list = el('ul', { class: 'regions' });
  section.append(list);
  const renderList = () => {
    list.replaceChildren();
    if (!regions.length) list.append(el('li', { class: 'empty', text: S.noRegions }));
    regions.forEach((region, idx) => {
      const times = isVideo
        ? { times: true, start: region.start_s.toFixed(1), end: region.end_s >= FOREVER ? '∞' : region.end_s.toFixed(1) }
        : {};
      const text = S.regionLabel(idx + 1, { x: pct(region.x), y: pct(region.y), width: pct(region.width), height: pct(region.height), ...times });
      const remove = el('button', { type: 'button', class: 'remove', text: '✕', 'aria-label': S.removeRegion(idx + 1) });
      remove.addEventListener('click', () => {
        regions.splice(idx, 1);
        changed();
      });
      list.append(el('li', { class: 'region', 'data-region-idx': String(idx) }, el('span', { text }), remove));
    });
  };

  const field = (name, labelText, attrs) => {
    const id = `${name}-${media.media_id}`;
    const input = el('input', { id, name, type: 'number', inputmode: 'decimal', required: '', ...attrs });
    return [el('label', { for: id, text: labelText }), input];
  };
  const [xLabel, xField] = field('x', S.fieldX, { min: '0', max: '100', step: '0.1' });
  const [yLabel, yField] = field('y', S.fieldY, { min: '0', max: '100', step: '0.1' });
  const [wLabel, wField] = field('width', S.fieldWidth, { min: '0.1', max: '100', step: '0.1' });
  const [hLabel, hField] = field('height', S.fieldHeight, { min: '0.1', max: '100', step: '0.1' });
  const [startLabel, startField] = field('start', S.fieldStart, { min: '0', step: '0.1', value: '0' });
  const [endLabel, endField] = field('end', S.fieldEnd, { min: '0', step: '0.1' });
  const form = el('form', { class: 'region-form', novalidate: '' });
  const grid = el('div', { class: 'fields' });
  for (const [labelNode, input] of [[xLabel, xField], [yLabel, yField], [wLabel, wField], [hLabel, hField]]) {
    grid.append(el('div', { class: 'field' }, labelNode, input));
  }
  if (isVideo) {
    grid.append(el('div', { class: 'field' }, startLabel, startField), el('div', { class: 'field' }, endLabel, endField));
  }
  const formError = el('p', { class: 'form-error', role: 'alert', hidden: '' });
  form.append(grid, el('button', { type: 'submit', class: 'add-region', text: S.addRegion }), formError);
  section.append(form);

  const timeRange = () => {
    if (!isVideo) return { start_s: 0, end_s: FOREVER };
    const start = Number(startField.value || 0);
    const end = endField.value === '' ? FOREVER : Number(endField.value);
    return { start_s: start, end_s: end };
  };
  const addRegion = (region) => {
    const ok =
      [region.x, region.y, region.width, region.height].every((v) => Number.isFinite(v) && v >= 0 && v <= 1) &&
      region.width > 0 &&
      region.height > 0 &&
      region.x + region.width <= 1 + 1e-9 &&
      region.y + region.height <= 1 + 1e-9 &&
      region.start_s >= 0 &&
      region.start_s <= region.end_s;
    formError.hidden = ok;
    formError.textContent = ok ? '' : S.regionInvalid;
    if (!ok) return false;
    regions.push(region);
    changed();
    return true;
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const values = [xField, yField, wField, hField].map((input) => Number(input.value) / 100);
    const filled = [xField, yField, wField, hField].every((input) => input.value !== '');
    const [x, y, width, height] = values;
    if (!filled) {
      formError.hidden = false;
      formError.textContent = S.regionInvalid;
      return;
    }
    if (addRegion({ x, y, width, height, ...timeRange() })) {
      for (const input of [xField, yField, wField, hField]) input.value = '';
    }
  });

  // Drawing: pointer events cover mouse, pen and touch alike.
  let drag = null;
  const draft = el('div', { class: 'box box-draft', hidden: '' });
  overlay.append(draft);
  const point = (event) => {
    const rect = overlay.getBoundingClientRect();
    return { x: clamp01((event.clientX - rect.left) / rect.width), y: clamp01((event.clientY - rect.top) / rect.height) };
  };
  const dragRect = (a, b) => ({ x: Math.min(a.x, b.x), y: Math.min(a.y, b.y), w: Math.abs(a.x - b.x), h: Math.abs(a.y - b.y) });
  overlay.addEventListener('pointerdown', (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    overlay.setPointerCapture(event.pointerId);
    drag = { from: point(event) };
    if (isVideo) picture.pause();
  });
  overlay.addEventListener('pointermove', (event) => {
    if (!drag) return;
    const r = dragRect(drag.from, point(event));
    Object.assign(draft.style, { left: `${r.x * 100}%`, top: `${r.y * 100}%`, width: `${r.w * 100}%`, height: `${r.h * 100}%` });
    draft.hidden = false;
  });
  const endDrag = (event) => {
    if (!drag) return;
    const r = dragRect(drag.from, point(event));
    drag = null;
    draft.hidden = true;
    if (r.w < MIN_DRAWN || r.h < MIN_DRAWN) return;
    xField.value = pct(r.x);
    yField.value = pct(r.y);
    wField.value = pct(r.w);
    hField.value = pct(r.h);
    addRegion({ x: r.x, y: r.y, width: r.w, height: r.h, ...timeRange() });
  };
  overlay.addEventListener('pointerup', endDrag);
  overlay.addEventListener('pointercancel', () => {
    drag = null;
    draft.hidden = true;
  });

  const rerunButton = el('button', { type: 'button', class: 'rerun primary', text: S.rerun });
  const rerunStatus = el('p', { class: 'rerun-status', role: 'status' });
  rerunButton.addEventListener('click', async () => {
    rerunButton.disabled = true;
    rerunStatus.textContent = S.rerunning;
    try {
      await rerun(regions.map((r) => ({ ...r, end_s: Math.min(r.end_s, Number.MAX_VALUE) })));
    } catch (err) {
      rerunButton.disabled = false;
      rerunStatus.textContent = err.text || String(err.message || err);
    }
  });
  section.append(rerunButton, rerunStatus);

  function changed() {
    section.dataset.regions = String(regions.length);
    renderList();
    drawRegions();
  }

  if (isVideo) picture.addEventListener('loadeddata', drawFaces);
  else picture.addEventListener('load', () => (section.dataset.loaded = 'true'));
  drawFaces();
  changed();
  container.replaceChildren(section);
  return { regions };
}
