// The views of the call: the receive slots' elements (hidden <audio> for audio slots, the stage,
// the thumbnails), our own preview and screen share, and who speaks.
//
// Each slot's receiver track is attached to its element once, at join: the server switches who
// flows into a slot without renegotiating, and `slots` messages say who it is now. A tile only
// changes its name, its attributes and whether it is shown.

import { S, roleText } from './strings.js';
import { call, local, ui, el, displayName, isSelf, pin, trace } from './state.js';
import { handPosition } from './hands.js';

/** mid -> {kind, el, media}: one per declared slot, in declaration order. */
const views = new Map();
let selfTile = null;
let selfScreenTile = null;
let announcedSpeaker = null;
let announceTimer = null;

function initials(name) {
  const letters = name.split(/\s+/).filter(Boolean).map((w) => w[0]).join('');
  return letters.slice(0, 2).toUpperCase();
}

function makeTile(kind) {
  const tile = el('article', `tile ${kind}`);
  tile.dataset.slotKind = kind;
  tile.dataset.slotMid = '';
  tile.dataset.participantId = '';
  tile.dataset.speaking = 'false';

  const media = el('div', 'media');
  const video = el('video');
  video.autoplay = true;
  video.muted = true; // sound goes through the audio slots' elements
  video.playsInline = true;
  video.setAttribute('playsinline', '');
  const placeholder = el('div', 'placeholder');
  placeholder.setAttribute('aria-hidden', 'true');
  media.append(video, placeholder);

  const label = el('div', 'tile-label');
  const name = el('span', 'tile-name');
  const badges = el('span', 'badges');
  label.append(name, badges);
  tile.append(media, label);
  return { tile, video };
}

/** Time to the first remote frame on screen, for the join-time figures (where supported). */
function noteFirstFrame(video) {
  if (!('requestVideoFrameCallback' in video)) return;
  video.requestVideoFrameCallback(() => {
    if (call.timings.firstFrame === undefined) call.timings.firstFrame = performance.now();
  });
}

/** Creates one element per receive slot and attaches the slot's receiver track to it, once. */
export function createSlotViews(transceivers) {
  for (const { kind, transceiver } of transceivers) {
    const mid = transceiver.mid;
    const stream = new MediaStream([transceiver.receiver.track]);
    if (kind === 'audio') {
      const audio = el('audio');
      audio.autoplay = true;
      audio.dataset.slotMid = mid;
      audio.dataset.slotKind = kind;
      audio.dataset.participantId = '';
      audio.srcObject = stream;
      ui.audioSink.append(audio);
      views.set(mid, { kind, el: audio, media: audio });
      continue;
    }
    const { tile, video } = makeTile(kind);
    tile.dataset.slotMid = mid;
    tile.hidden = true;
    video.srcObject = stream;
    noteFirstFrame(video);
    if (kind === 'thumbnail') {
      const button = el('button', 'tile-pin');
      button.textContent = S.pin;
      tile.querySelector('.tile-label').append(button);
      // A click anywhere on the thumbnail pins; the button is there for the keyboard.
      tile.addEventListener('click', () => {
        const pid = tile.dataset.participantId;
        if (pid) pin(call.pinned === pid ? null : pid);
      });
      ui.grid.append(tile);
    } else {
      ui.stage.append(tile);
    }
    views.set(mid, { kind, el: tile, media: video });
  }
}

/** Our own camera, muted, first in the grid. */
export function showSelfPreview() {
  const { tile, video } = makeTile('self');
  tile.classList.add('self');
  selfTile = tile;
  if (local.videoTrack) video.srcObject = new MediaStream([local.videoTrack]);
  else video.hidden = true;
  ui.grid.prepend(tile);
  renderSelf();
}

export function showSelfScreen(track) {
  const { tile, video } = makeTile('self-screen');
  tile.classList.add('self');
  video.srcObject = new MediaStream([track]);
  tile.querySelector('.tile-name').textContent = S.myScreen;
  tile.setAttribute('aria-label', S.myScreen);
  selfScreenTile = tile;
  ui.grid.insertBefore(tile, selfTile ? selfTile.nextSibling : ui.grid.firstChild);
}

export function hideSelfScreen() {
  if (!selfScreenTile) return;
  selfScreenTile.querySelector('video').srcObject = null;
  selfScreenTile.remove();
  selfScreenTile = null;
}

function badgesOf(pid, source) {
  if (source === 'screen_share') return [];
  const badges = [];
  const hand = pid ? handPosition(pid) : 0;
  if (hand) badges.push(S.handBadge(hand));
  if (isSelf(pid)) {
    if (call.weak.self) badges.push(S.weakBadge);
    if (call.role && call.role !== 'parent') badges.push(roleText(call.role));
    if (!local.audioTrack) badges.push(S.noMicBadge);
    else if (local.audioMuted) badges.push(S.micOff);
    if (!local.videoTrack) badges.push(S.noCamBadge);
    else if (local.videoOff) badges.push(S.camOff);
    return badges;
  }
  const p = call.participants[pid];
  if (!p) return badges;
  if (p.reconnecting) badges.push(S.reconnectingBadge);
  else if (call.weak.participants[pid]) badges.push(S.weakBadge);
  if (p.role !== 'parent') badges.push(roleText(p.role));
  if (p.audio_muted) badges.push(S.micOff);
  if (p.video_off) badges.push(S.camOff);
  return badges;
}

function renderSelf() {
  if (!selfTile) return;
  const pid = call.participantId || '';
  selfTile.dataset.participantId = pid;
  selfTile.dataset.hand = String(pid ? handPosition(pid) : 0);
  selfTile.dataset.speaking = String(call.speakers.includes(pid));
  selfTile.classList.toggle('speaking', selfTile.dataset.speaking === 'true');
  selfTile.classList.toggle('video-off', !local.videoTrack || local.videoOff);
  selfTile.querySelector('.tile-name').textContent = S.you;
  selfTile.querySelector('.placeholder').textContent = initials(S.you);
  const badges = badgesOf(pid || null, 'camera');
  if (!pid) {
    // Before `joined` our id is unknown; show our own state anyway.
    if (!local.audioTrack) badges.push(S.noMicBadge);
    else if (local.audioMuted) badges.push(S.micOff);
    if (!local.videoTrack) badges.push(S.noCamBadge);
  }
  selfTile.querySelector('.badges').textContent = badges.length ? `(${badges.join(', ')})` : '';
  selfTile.setAttribute('aria-label', badges.length ? `${S.you}, ${badges.join(', ')}` : S.you);
}

/** Brings every tile up to date with `call.slots`, `call.participants` and `call.speakers`. */
export function renderTiles() {
  renderSelf();
  let stageShown = false;
  let nPaused = 0;
  for (const [mid, view] of views) {
    const slot = call.slots[mid];
    const pid = (slot && slot.participant_id) || '';
    const source = (slot && slot.source) || '';
    const speaking = pid !== '' && call.speakers.includes(pid);
    const el = view.el;
    el.dataset.participantId = pid;
    el.dataset.source = source;
    el.dataset.speaking = String(speaking);
    if (view.kind === 'audio') continue;

    el.hidden = pid === '';
    if (view.kind === 'stage' && pid !== '') stageShown = true;
    const name = pid ? displayName(pid) : '';
    const shown = source === 'screen_share' ? S.screenOf(name) : name;
    el.querySelector('.tile-name').textContent = shown;
    el.querySelector('.placeholder').textContent = pid ? initials(name) : '';
    const p = call.participants[pid];
    el.classList.toggle('video-off', source === 'camera' && !!(p && p.video_off));
    el.classList.toggle('screen', source === 'screen_share');
    el.classList.toggle('speaking', speaking);
    el.classList.toggle('reconnecting', !!(p && p.reconnecting));
    // Within our downlink (the server's choice): the publisher's best layer, a lower one, or
    // nothing for now.
    const quality = (slot && slot.quality) || '';
    el.dataset.quality = quality;
    el.classList.toggle('paused', quality === 'paused');
    if (quality === 'paused') nPaused += 1;
    el.dataset.reconnecting = String(!!(p && p.reconnecting));
    el.dataset.weak = String(!!call.weak.participants[pid]);
    el.dataset.hand = String(pid ? handPosition(pid) : 0);
    const pinned = pid !== '' && call.pinned === pid;
    el.dataset.pinned = String(pinned);
    const badges = badgesOf(pid, source);
    if (quality === 'low') badges.push(S.lowQuality);
    if (quality === 'paused') badges.push(S.pausedBadge);
    if (speaking) badges.push(S.speaking);
    el.querySelector('.badges').textContent = badges.length ? `(${badges.join(', ')})` : '';
    el.setAttribute('aria-label', badges.length ? `${shown}, ${badges.join(', ')}` : shown);
    const button = el.querySelector('.tile-pin');
    if (button) {
      button.textContent = pinned ? S.pinned : S.pin;
      button.setAttribute('aria-pressed', String(pinned));
      button.setAttribute('aria-label', pinned ? S.unpinOf(name) : S.pinOf(name));
    }
  }
  ui.stage.hidden = !stageShown;
  ui.bandwidthNotice.hidden = nPaused === 0;
  call.pausedVideos = nPaused;
  ui.unpin.hidden = call.pinned === null;
  document.body.dataset.speaking = call.speakers.join(' ');
  announceSpeaker();
}

// Screen readers hear who speaks only when the main speaker changes and keeps speaking a while:
// `speakers` may come five times a second.
function announceSpeaker() {
  const top = call.speakers.find((pid) => !isSelf(pid)) || null;
  if (top === announcedSpeaker) {
    clearTimeout(announceTimer);
    announceTimer = null;
    return;
  }
  if (announceTimer) return;
  announceTimer = setTimeout(() => {
    announceTimer = null;
    const now = call.speakers.find((pid) => !isSelf(pid)) || null;
    if (now === top && now !== announcedSpeaker) {
      announcedSpeaker = now;
      ui.speakerNow.textContent = now ? S.speakingNow(displayName(now)) : '';
    }
  }, 1500);
}

/**
 * Starts the audio slots' playback. Returns false when the browser wants a click first (autoplay
 * policy): the page then shows "Activer le son".
 */
export async function playAudio() {
  let ok = true;
  for (const view of views.values()) {
    if (view.kind !== 'audio') continue;
    try {
      await view.media.play();
    } catch (err) {
      trace(`audio play refused: ${err && err.name}`);
      ok = false;
    }
  }
  return ok;
}

export function clearViews() {
  for (const view of views.values()) {
    view.media.srcObject = null;
    view.el.remove();
  }
  views.clear();
  if (selfTile) {
    selfTile.querySelector('video').srcObject = null;
    selfTile.remove();
    selfTile = null;
  }
  hideSelfScreen();
  clearTimeout(announceTimer);
}
