// Class visio client: one RTCPeerConnection to the SFU, one WebSocket to the signaling server.
// Protocol version 1 (docs/protocol.md). Plain JS, no build step, no external resources.
// Standard APIs only, so that it runs in Chromium and Firefox alike.
(function () {
  'use strict';

  const PROTOCOL_VERSION = 1;
  // Ideal, not exact: any camera works; a class call does not need more than this.
  const VIDEO_CONSTRAINTS = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 24, max: 30 } };

  const ERROR_TEXT = {
    tier_forbids_visio: "La formule de cette classe ne comprend pas la visio. Un administrateur de la classe peut changer de formule.",
    room_full: "La visio est complète : le nombre maximum de participants est atteint. Réessayez quand quelqu'un sera parti.",
    not_a_member: "Vous n'êtes pas membre approuvé de cette classe : vous ne pouvez pas rejoindre sa visio.",
    unauthorized: "Votre lien de connexion n'est pas valide ou a expiré. Rouvrez la visio depuis l'application de la classe.",
    session_locked: "L'enseignant a verrouillé la session : personne ne peut la rejoindre pour le moment.",
    muted_by_moderator: "L'enseignant a coupé votre micro. Vous pourrez le réactiver quand il vous le demandera.",
    removed_from_session: "L'enseignant vous a retiré de cette session : vous ne pouvez pas la rejoindre à nouveau.",
    invalid_request: "Le serveur a refusé une demande invalide. Rechargez la page si le problème continue.",
    unavailable: "Le service est momentanément indisponible. Réessayez dans un instant.",
    rate_limited: "Trop de tentatives en peu de temps. Patientez quelques secondes avant de réessayer.",
    too_many_connections: "La visio est déjà ouverte dans plusieurs onglets ou appareils. Fermez-en un pour rejoindre depuis celui-ci.",
    server_busy: "Le serveur est très sollicité en ce moment. Réessayez dans quelques secondes.",
    forbidden_role: "Votre rôle dans la classe ne permet pas cette action.",
  };

  const LEFT_TEXT = {
    left: "Vous avez quitté la visio.",
    removed_by_moderator: "L'enseignant vous a retiré de la visio.",
    removed_from_class: "Vous ne faites plus partie de cette classe : la visio s'est arrêtée pour vous.",
    duplicate_identity: "Vous avez rejoint la visio depuis une autre fenêtre ou un autre appareil ; celle-ci est déconnectée.",
    room_full: "La visio est complète : le nombre maximum de participants était atteint au démarrage de la session.",
    connection_lost: "La connexion audio et vidéo a été perdue. Rechargez la page pour revenir.",
    session_max_duration: "La session a atteint sa durée maximale et s'est terminée.",
    session_ended_by_moderator: "L'enseignant a terminé la session.",
    session_empty: "La session s'est terminée : plus personne n'y participait.",
    server_shutdown: "Le serveur redémarre : la session s'est interrompue. Réessayez dans un instant.",
  };

  const ROLE_TEXT = { teacher: 'Enseignant·e', admin: 'Administrateur·rice', parent: 'Parent' };
  const KIND_TEXT = { audio: 'micro', video: 'caméra' };

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'), alert: $('alert'), grid: $('grid'), controls: $('controls'),
    mic: $('btn-mic'), cam: $('btn-cam'), sound: $('btn-sound'), leave: $('btn-leave'),
    modControls: $('moderator-controls'), muteAll: $('btn-mute-all'), lock: $('btn-lock'),
    share: $('btn-share'), end: $('btn-end'), timer: $('timer'), timerValue: $('timer-value'),
    lockIndicator: $('lock-indicator'), audioSink: $('audio-sink'),
    prompt: $('unmute-prompt'), promptText: $('unmute-text'), promptAccept: $('unmute-accept'),
    promptIgnore: $('unmute-ignore'),
  };

  // Everything the page knows; also the debug hook the browser tests read (window.klassCall).
  const call = {
    pc: null,
    ws: null,
    participantId: null,
    role: null,
    state: 'starting',
    /** participant_id -> {participant_id, display_name, role, audio_muted, video_off} */
    participants: {},
    /** track_id -> {track_id, participant_id, kind, source}, as announced by the server */
    tracks: {},
    /** received MediaStreamTrack id -> {participantId, kind, mid} */
    remoteTracks: {},
    locked: false,
    maxParticipants: null,
    remainingSeconds: null,
    errorCode: null,
    leftReason: null,
    mediaMode: null,
    timings: { start: performance.now() },
    log: [],
    send,
  };
  window.klassCall = call;

  const local = {
    stream: null,
    audioTrack: null,
    videoTrack: null,
    /** [{transceiver, source}] for what we publish */
    senders: [],
    audioMuted: false,
    videoOff: false,
    share: null,
  };

  let candidateQueue = [];
  let joinedAck = false;
  let msgChain = Promise.resolve();
  let wantLocalOffer = false;
  let localOfferInFlight = false;
  let deadline = null;
  let timerHandle = null;
  let endConfirmTimer = null;

  // ---------- small helpers ----------

  function trace(what) {
    call.log.push(`${Math.round(performance.now())} ${what}`);
    if (call.log.length > 200) call.log.shift();
  }

  function setState(state) {
    call.state = state;
    document.body.dataset.state = state;
    trace(`state ${state}`);
  }

  function setStatus(text) {
    ui.status.textContent = text;
  }

  function showAlert(text, code) {
    ui.alert.textContent = text;
    ui.alert.dataset.code = code || '';
    ui.alert.classList.toggle('warning', code === 'time_warning');
    ui.alert.hidden = false;
  }

  function hideAlert() {
    ui.alert.hidden = true;
    ui.alert.textContent = '';
    ui.alert.dataset.code = '';
  }

  function errorText(code, message) {
    return ERROR_TEXT[code] || `Erreur (${code || 'inconnue'}) : ${message || ''}`;
  }

  function send(msg) {
    const ws = call.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(msg));
    return true;
  }

  function isModerator() {
    return call.role === 'teacher' || call.role === 'admin';
  }

  function displayName(pid) {
    if (pid === call.participantId) return 'Vous';
    const p = call.participants[pid];
    return p ? p.display_name : 'Participant';
  }

  function readToken() {
    // The token is in the fragment, which browsers never send to the server. Once read, it leaves
    // the address bar (not in history or screenshots) but stays in this tab for a reload.
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

  function classIdFromPath() {
    const m = /^\/call\/([^/]+)\/?$/.exec(location.pathname);
    if (!m) return null;
    const id = decodeURIComponent(m[1]);
    return /^[A-Za-z0-9_-]{1,64}$/.test(id) ? id : null;
  }

  // ---------- media ----------

  async function getLocalMedia() {
    const md = navigator.mediaDevices;
    if (!md || !md.getUserMedia) return null;
    const attempts = [
      { audio: true, video: VIDEO_CONSTRAINTS },
      { audio: true, video: false },
      { audio: false, video: VIDEO_CONSTRAINTS },
    ];
    for (const constraints of attempts) {
      try {
        return await md.getUserMedia(constraints);
      } catch (err) {
        trace(`getUserMedia ${JSON.stringify(constraints)} failed: ${err && err.name}`);
      }
    }
    return null;
  }

  function stopLocalMedia() {
    if (local.stream) local.stream.getTracks().forEach((t) => t.stop());
    if (local.share) local.share.track.stop();
  }

  // ---------- grid ----------

  function tileId(pid, screen) {
    return screen ? `${pid}:screen` : pid;
  }

  function findTile(key) {
    for (const el of ui.grid.children) {
      if (el.dataset.key === key) return el;
    }
    return null;
  }

  function ensureTile(pid, screen) {
    const key = tileId(pid, screen);
    let tile = findTile(key);
    if (tile) return tile;
    tile = document.createElement('article');
    tile.className = screen ? 'tile screen' : 'tile';
    tile.dataset.key = key;
    tile.dataset.participant = pid;
    if (pid === call.participantId || pid === 'local') tile.classList.add('self');

    const media = document.createElement('div');
    media.className = 'media';
    const video = document.createElement('video');
    video.autoplay = true;
    video.muted = true; // sound goes through the <audio> elements
    video.playsInline = true;
    video.setAttribute('playsinline', '');
    video.hidden = true;
    const placeholder = document.createElement('div');
    placeholder.className = 'placeholder';
    placeholder.setAttribute('aria-hidden', 'true');
    media.append(video, placeholder);

    const label = document.createElement('div');
    label.className = 'label';
    const name = document.createElement('span');
    name.className = 'name';
    const badges = document.createElement('span');
    badges.className = 'badges';
    label.append(name, badges);

    tile.append(media, label);
    if (!screen && pid !== 'local' && pid !== call.participantId) {
      const actions = document.createElement('div');
      actions.className = 'mod-actions';
      actions.hidden = !isModerator();
      for (const [action, text] of [
        ['mute', 'Couper le micro'],
        ['request_unmute', 'Demander de réactiver le micro'],
        ['disable_camera', 'Couper la caméra'],
        ['remove', 'Retirer'],
      ]) {
        const b = document.createElement('button');
        b.type = 'button';
        b.dataset.action = action;
        b.textContent = text;
        b.addEventListener('click', () => moderate(action, pid));
        actions.append(b);
      }
      tile.append(actions);
    }
    ui.grid.append(tile);
    refreshTile(tile);
    return tile;
  }

  function refreshTile(tile) {
    const pid = tile.dataset.participant;
    const screen = tile.classList.contains('screen');
    const self = pid === 'local' || pid === call.participantId;
    const p = call.participants[pid];
    const name = self ? 'Vous' : displayName(pid);
    const nameText = screen ? `Écran de ${name}` : name;
    tile.querySelector('.name').textContent = nameText;
    tile.setAttribute('aria-label', nameText);
    const badges = [];
    const role = self ? call.role : p && p.role;
    if (role && role !== 'parent' && !screen) badges.push(ROLE_TEXT[role] || role);
    const audioMuted = self ? local.audioMuted : p && p.audio_muted;
    const videoOff = self ? local.videoOff : p && p.video_off;
    if (!screen && self && !local.audioTrack) badges.push('sans micro');
    else if (!screen && audioMuted) badges.push('micro coupé');
    if (!screen && self && !local.videoTrack) badges.push('sans caméra');
    else if (!screen && videoOff) badges.push('caméra coupée');
    tile.querySelector('.badges').textContent = badges.length ? `(${badges.join(', ')})` : '';
    tile.classList.toggle('video-off', !screen && !!videoOff);
    const initials = (name || '?').trim().split(/\s+/).map((w) => w[0] || '').join('').slice(0, 2).toUpperCase();
    tile.querySelector('.placeholder').textContent = initials;
    const actions = tile.querySelector('.mod-actions');
    if (actions) {
      actions.hidden = !isModerator() || call.state !== 'admitted';
      for (const b of actions.querySelectorAll('button')) b.setAttribute('aria-label', `${b.textContent} : ${name}`);
    }
  }

  function refreshAllTiles() {
    for (const tile of ui.grid.children) refreshTile(tile);
  }

  function removeParticipantTiles(pid) {
    for (const tile of [...ui.grid.children]) {
      if (tile.dataset.participant === pid) tile.remove();
    }
    for (const el of [...ui.audioSink.children]) {
      if (el.dataset.participant === pid) el.remove();
    }
  }

  function setTileVideo(tile, track, serverTrackId) {
    const video = tile.querySelector('video');
    video.srcObject = track ? new MediaStream([track]) : null;
    video.hidden = !track;
    video.dataset.trackId = track ? track.id : '';
    video.dataset.serverTrackId = serverTrackId || '';
    if (track) video.play().catch(() => {});
  }

  function showLocalPreview() {
    const tile = ensureTile('local', false);
    if (local.videoTrack) setTileVideo(tile, local.videoTrack);
  }

  // ---------- remote media ----------

  // The server's track id is the msid track id of the m-section. Chromium uses it as the received
  // track's id; Firefox does not, so it is read from the remote SDP.
  function msidTrackId(mid) {
    const desc = call.pc && call.pc.remoteDescription;
    if (!desc || mid === null) return null;
    for (const section of desc.sdp.split(/\r?\nm=/).slice(1)) {
      const lines = section.split(/\r?\n/);
      if (!lines.includes(`a=mid:${mid}`)) continue;
      const msid = lines.find((l) => l.startsWith('a=msid:'));
      const parts = msid ? msid.slice('a=msid:'.length).trim().split(/\s+/) : [];
      return parts[1] || null;
    }
    return null;
  }

  function onTrack(ev) {
    const track = ev.track;
    const stream = ev.streams && ev.streams[0];
    const pid = stream ? stream.id : 'unknown';
    const mid = ev.transceiver ? ev.transceiver.mid : null;
    const serverTrackId = msidTrackId(mid) || track.id;
    call.remoteTracks[track.id] = { participantId: pid, kind: track.kind, mid, trackId: serverTrackId };
    if (call.timings.firstTrack === undefined) call.timings.firstTrack = performance.now();
    trace(`track ${track.kind} ${track.id} from ${pid} mid ${mid}`);

    if (track.kind === 'audio') {
      const audio = document.createElement('audio');
      audio.autoplay = true;
      audio.dataset.participant = pid;
      audio.dataset.trackId = track.id;
      audio.dataset.serverTrackId = serverTrackId;
      audio.srcObject = new MediaStream([track]);
      ui.audioSink.append(audio);
      audio.play().catch(() => {
        // Autoplay refused (no capture running, no click yet): one click brings the sound.
        ui.sound.hidden = false;
      });
    } else {
      const known = call.tracks[serverTrackId];
      let screen = known ? known.source === 'screen_share' : false;
      if (!known) {
        const cam = findTile(tileId(pid, false));
        const camVideo = cam && cam.querySelector('video');
        screen = !!(camVideo && camVideo.dataset.trackId && camVideo.dataset.trackId !== track.id);
      }
      const tile = ensureTile(pid, screen);
      setTileVideo(tile, track, serverTrackId);
      noteFirstFrame(tile.querySelector('video'));
    }

    const cleanup = () => removeTrackElements(track.id);
    track.addEventListener('ended', cleanup);
    if (stream) {
      stream.addEventListener('removetrack', (e) => {
        if (e.track === track) cleanup();
      });
    }
  }

  // By the browser's track id or the server's.
  // Time to the first remote frame on screen, for the join-time figures (where supported).
  function noteFirstFrame(video) {
    if (call.timings.firstFrame !== undefined || !('requestVideoFrameCallback' in video)) return;
    video.requestVideoFrameCallback(() => {
      if (call.timings.firstFrame === undefined) call.timings.firstFrame = performance.now();
    });
  }

  function removeTrackElements(trackId) {
    const matches = (el) => el.dataset.trackId === trackId || el.dataset.serverTrackId === trackId;
    for (const el of [...ui.audioSink.children]) {
      if (matches(el)) el.remove();
    }
    for (const tile of [...ui.grid.children]) {
      const video = tile.querySelector('video');
      if (video && video.dataset.trackId && matches(video)) {
        if (tile.classList.contains('screen')) tile.remove();
        else setTileVideo(tile, null);
      }
    }
  }

  // ---------- negotiation ----------

  function declarations() {
    return local.senders
      .filter((s) => s.transceiver.mid !== null && s.active)
      .map((s) => ({ mid: s.transceiver.mid, source: s.source }));
  }

  function addSender(track, source, stream) {
    const transceiver = call.pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
    const entry = { transceiver, source, active: true };
    local.senders.push(entry);
    return entry;
  }

  function enqueue(task) {
    msgChain = msgChain.then(task).catch((err) => {
      trace(`error: ${err && (err.stack || err)}`);
      console.error('klass call:', err);
    });
    return msgChain;
  }

  // Our own offers (screen share) wait for a stable signaling state; the server's offers that cross
  // ours are dropped: the server rolls its own back and offers again after answering ours.
  function requestLocalOffer() {
    wantLocalOffer = true;
    enqueue(maybeSendLocalOffer);
  }

  async function maybeSendLocalOffer() {
    const pc = call.pc;
    if (!wantLocalOffer || !pc || localOfferInFlight || pc.signalingState !== 'stable') return;
    if (call.state !== 'admitted') return;
    wantLocalOffer = false;
    localOfferInFlight = true;
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    send({ type: 'offer', sdp: pc.localDescription.sdp, tracks: declarations() });
  }

  async function onServerOffer(sdp) {
    const pc = call.pc;
    if (!pc) return;
    if (pc.signalingState === 'have-local-offer') {
      trace('server offer crossed ours: ignored');
      return;
    }
    await pc.setRemoteDescription({ type: 'offer', sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    send({ type: 'answer', sdp: pc.localDescription.sdp });
    await maybeSendLocalOffer();
  }

  async function onServerAnswer(sdp) {
    const pc = call.pc;
    if (!pc || pc.signalingState !== 'have-local-offer') return;
    await pc.setRemoteDescription({ type: 'answer', sdp });
    localOfferInFlight = false;
    await maybeSendLocalOffer();
  }

  async function rollbackLocalOffer() {
    const pc = call.pc;
    localOfferInFlight = false;
    if (pc && pc.signalingState === 'have-local-offer') {
      await pc.setLocalDescription({ type: 'rollback' });
    }
  }

  function onLocalCandidate(ev) {
    // A null candidate or an empty one is the end of candidates: the server needs no signal for it.
    if (!ev.candidate || !ev.candidate.candidate) return;
    if (joinedAck) send({ type: 'candidate', candidate: ev.candidate.candidate });
    else candidateQueue.push(ev.candidate.candidate);
  }

  // ---------- server messages ----------

  function onMessage(raw) {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch (_) {
      trace('unparsable message');
      return;
    }
    trace(`<- ${msg.type}`);
    enqueue(() => handle(msg));
  }

  async function handle(msg) {
    switch (msg.type) {
      case 'joined':
        return onJoined(msg);
      case 'waiting':
        setState('waiting');
        setStatus("L'enseignant n'a pas encore démarré la visio. Vous la rejoindrez automatiquement dès qu'elle commencera.");
        return;
      case 'admitted':
        return onAdmitted(msg);
      case 'offer':
        return onServerOffer(msg.sdp);
      case 'answer':
        return onServerAnswer(msg.sdp);
      case 'participant_joined':
        upsertParticipant(msg.participant);
        return;
      case 'participant_left':
        delete call.participants[msg.participant_id];
        removeParticipantTiles(msg.participant_id);
        announceCount();
        return;
      case 'track_published':
        call.tracks[msg.track.track_id] = msg.track;
        return;
      case 'track_unpublished':
        delete call.tracks[msg.track_id];
        removeTrackElements(msg.track_id);
        return;
      case 'mute_changed':
        return onMuteChanged(msg);
      case 'unmute_requested':
        return showUnmutePrompt(msg.kind);
      case 'lock_changed':
        call.locked = !!msg.locked;
        refreshLock();
        return;
      case 'role_changed':
        return onRoleChanged(msg);
      case 'time_warning':
        startCountdown(msg.remaining_seconds);
        showAlert(`La session se termine dans ${formatMinutes(msg.remaining_seconds)}.`, 'time_warning');
        return;
      case 'left':
        return onLeft(msg.reason);
      case 'error':
        return onError(msg.code, msg.message);
      default:
        trace(`unknown message type ${msg.type}`);
    }
  }

  async function onJoined(msg) {
    call.participantId = msg.participant_id;
    call.role = msg.role;
    call.maxParticipants = msg.max_participants;
    call.timings.joined = performance.now();
    if (msg.protocol_version !== PROTOCOL_VERSION) {
      trace(`server speaks protocol ${msg.protocol_version}, we speak ${PROTOCOL_VERSION}`);
    }
    setState('joined');
    setStatus('Connexion à la visio…');
    // The local preview tile becomes this participant's tile.
    const preview = findTile('local');
    if (preview) {
      preview.dataset.participant = msg.participant_id;
      preview.dataset.key = msg.participant_id;
    }
    await call.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
    joinedAck = true;
    for (const c of candidateQueue) send({ type: 'candidate', candidate: c });
    candidateQueue = [];
    ui.controls.hidden = false;
    ui.modControls.hidden = !isModerator();
    refreshAllTiles();
  }

  function onAdmitted(msg) {
    call.timings.admitted = performance.now();
    setState('admitted');
    hideAlert();
    for (const p of msg.participants || []) upsertParticipant(p, true);
    for (const t of msg.tracks || []) call.tracks[t.track_id] = t;
    call.remainingSeconds = msg.remaining_seconds;
    if (msg.remaining_seconds !== null && msg.remaining_seconds !== undefined) {
      startCountdown(msg.remaining_seconds);
    }
    refreshAllTiles();
    announceCount();
    enqueue(maybeSendLocalOffer);
  }

  function upsertParticipant(p, quiet) {
    call.participants[p.participant_id] = p;
    if (p.participant_id === call.participantId) {
      // The server's view of our own state wins over ours.
      applySelfMute('audio', p.audio_muted);
      applySelfMute('video', p.video_off);
    } else {
      const tile = ensureTile(p.participant_id, false);
      refreshTile(tile);
      const screen = findTile(tileId(p.participant_id, true));
      if (screen) refreshTile(screen);
      if (!quiet) announceCount();
    }
  }

  function announceCount() {
    if (call.state !== 'admitted') return;
    const others = Object.keys(call.participants).filter((id) => id !== call.participantId).length;
    setStatus(others === 0
      ? 'Vous êtes dans la visio. Personne d\'autre pour le moment.'
      : `Vous êtes dans la visio avec ${others} autre${others > 1 ? 's' : ''} participant${others > 1 ? 's' : ''}.`);
  }

  function onRoleChanged(msg) {
    const p = call.participants[msg.participant_id];
    if (p) p.role = msg.role;
    if (msg.participant_id === call.participantId) {
      const wasModerator = isModerator();
      call.role = msg.role;
      ui.modControls.hidden = !isModerator();
      if (wasModerator !== isModerator()) {
        showAlert(isModerator()
          ? 'La classe vous a donné le rôle d\'enseignant : vous pouvez maintenant animer la visio.'
          : 'La classe a changé votre rôle : vous ne pouvez plus animer la visio.', 'role_changed');
      }
    }
    refreshAllTiles();
  }

  function onMuteChanged(msg) {
    const p = call.participants[msg.participant_id];
    if (p) {
      if (msg.kind === 'audio') p.audio_muted = msg.muted;
      else p.video_off = msg.muted;
    }
    if (msg.participant_id === call.participantId) {
      applySelfMute(msg.kind, msg.muted);
      if (msg.muted && msg.by_moderator) {
        showAlert(msg.kind === 'audio'
          ? "L'enseignant a coupé votre micro."
          : "L'enseignant a coupé votre caméra.", 'muted_by_moderator');
      }
    }
    for (const tile of ui.grid.children) {
      if (tile.dataset.participant === msg.participant_id) refreshTile(tile);
    }
  }

  function applySelfMute(kind, muted) {
    if (kind === 'audio') {
      local.audioMuted = !!muted;
      if (local.audioTrack) local.audioTrack.enabled = !muted;
    } else {
      local.videoOff = !!muted;
      if (local.videoTrack) local.videoTrack.enabled = !muted;
    }
    refreshSelfButtons();
  }

  function onLeft(reason) {
    call.leftReason = reason;
    setState('left');
    setStatus(LEFT_TEXT[reason] || `La visio s'est arrêtée (${reason}).`);
    ui.status.dataset.reason = reason;
    teardown();
  }

  async function onError(code, message) {
    call.errorCode = code;
    if (call.state === 'connecting' || call.state === 'starting') {
      // A refused join: the server closes the socket after this.
      setState('refused');
      setStatus(errorText(code, message));
      ui.status.dataset.code = code;
      teardown();
      return;
    }
    if (localOfferInFlight) {
      // Our offer was refused (e.g. a screen share): back to the last agreed state.
      await rollbackLocalOffer();
      if (local.share) stopShare(false);
    }
    if (code === 'muted_by_moderator') applySelfMute('audio', true);
    showAlert(errorText(code, message), code);
  }

  // ---------- countdown ----------

  function formatClock(seconds) {
    const s = Math.max(0, Math.round(seconds));
    const m = Math.floor(s / 60);
    return `${String(m).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
  }

  function formatMinutes(seconds) {
    const m = Math.round(seconds / 60);
    if (m >= 1) return `${m} minute${m > 1 ? 's' : ''}`;
    return `${Math.round(seconds)} secondes`;
  }

  function startCountdown(remaining) {
    deadline = Date.now() + remaining * 1000;
    ui.timer.hidden = false;
    const tick = () => {
      const left = (deadline - Date.now()) / 1000;
      call.remainingSeconds = Math.max(0, Math.round(left));
      ui.timerValue.textContent = formatClock(left);
      ui.timer.classList.toggle('urgent', left <= 60);
    };
    tick();
    if (!timerHandle) timerHandle = setInterval(tick, 1000);
  }

  // ---------- controls ----------

  function refreshSelfButtons() {
    ui.mic.disabled = !local.audioTrack;
    ui.mic.textContent = !local.audioTrack ? 'Pas de micro' : local.audioMuted ? 'Réactiver mon micro' : 'Couper mon micro';
    ui.mic.setAttribute('aria-pressed', String(local.audioMuted));
    ui.cam.disabled = !local.videoTrack;
    ui.cam.textContent = !local.videoTrack ? 'Pas de caméra' : local.videoOff ? 'Réactiver ma caméra' : 'Couper ma caméra';
    ui.cam.setAttribute('aria-pressed', String(local.videoOff));
    const self = findTile(call.participantId || 'local');
    if (self) refreshTile(self);
  }

  function toggleSelf(kind) {
    const muted = kind === 'audio' ? !local.audioMuted : !local.videoOff;
    // Off takes effect at once, locally; on is confirmed or refused by the server
    // (muted_by_moderator), which also enforces it.
    applySelfMute(kind, muted);
    send({ type: 'set_muted', kind, muted });
  }

  function moderate(action, target) {
    if (!isModerator()) return;
    if (action === 'request_unmute') send({ type: 'request_unmute', target, kind: 'audio' });
    else send({ type: action, target });
  }

  function refreshLock() {
    ui.lock.textContent = call.locked ? 'Déverrouiller la session' : 'Verrouiller la session';
    ui.lock.setAttribute('aria-pressed', String(call.locked));
    ui.lockIndicator.hidden = !call.locked;
  }

  function showUnmutePrompt(kind) {
    ui.promptText.textContent = kind === 'audio'
      ? "L'enseignant vous demande de réactiver votre micro."
      : "L'enseignant vous demande de réactiver votre caméra.";
    ui.promptAccept.textContent = `Réactiver mon ${KIND_TEXT[kind] || kind}`;
    ui.prompt.dataset.kind = kind;
    ui.prompt.hidden = false;
    ui.promptAccept.focus();
  }

  function answerUnmutePrompt(accept) {
    const kind = ui.prompt.dataset.kind;
    ui.prompt.hidden = true;
    if (!accept) return;
    applySelfMute(kind, false);
    send({ type: 'set_muted', kind, muted: false });
    hideAlert();
  }

  async function startShare() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) {
      showAlert("Ce navigateur ne permet pas de partager l'écran.", 'screen_share');
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch (err) {
      trace(`getDisplayMedia failed: ${err && err.name}`);
      return;
    }
    const track = stream.getVideoTracks()[0];
    if (!track || !call.pc) return;
    const entry = addSender(track, 'screen_share', stream);
    local.share = { entry, track };
    track.addEventListener('ended', () => stopShare(true));
    const tile = ensureTile(call.participantId, true);
    setTileVideo(tile, track);
    ui.share.textContent = "Arrêter le partage d'écran";
    ui.share.setAttribute('aria-pressed', 'true');
    requestLocalOffer();
  }

  function stopShare(renegotiate) {
    const share = local.share;
    if (!share) return;
    local.share = null;
    share.track.stop();
    share.entry.active = false;
    try {
      share.entry.transceiver.sender.replaceTrack(null);
      share.entry.transceiver.direction = 'inactive';
    } catch (_) {
      // The connection may already be closed.
    }
    const tile = findTile(tileId(call.participantId, true));
    if (tile) tile.remove();
    ui.share.textContent = 'Partager mon écran';
    ui.share.setAttribute('aria-pressed', 'false');
    if (renegotiate) requestLocalOffer();
  }

  function confirmEnd() {
    if (ui.end.dataset.confirm === '1') {
      clearTimeout(endConfirmTimer);
      send({ type: 'end_session' });
      return;
    }
    ui.end.dataset.confirm = '1';
    ui.end.textContent = 'Confirmer : terminer pour tout le monde';
    endConfirmTimer = setTimeout(() => {
      ui.end.dataset.confirm = '';
      ui.end.textContent = 'Terminer la session';
    }, 5000);
  }

  function wireControls() {
    ui.mic.addEventListener('click', () => toggleSelf('audio'));
    ui.cam.addEventListener('click', () => toggleSelf('video'));
    ui.sound.addEventListener('click', () => {
      for (const a of ui.audioSink.querySelectorAll('audio')) a.play().catch(() => {});
      ui.sound.hidden = true;
    });
    ui.leave.addEventListener('click', () => {
      if (!send({ type: 'leave' })) onLeft('left');
    });
    ui.muteAll.addEventListener('click', () => send({ type: 'mute_all' }));
    ui.lock.addEventListener('click', () => send({ type: 'lock', locked: !call.locked }));
    ui.share.addEventListener('click', () => (local.share ? stopShare(true) : startShare()));
    ui.end.addEventListener('click', confirmEnd);
    ui.promptAccept.addEventListener('click', () => answerUnmutePrompt(true));
    ui.promptIgnore.addEventListener('click', () => answerUnmutePrompt(false));
    window.addEventListener('pagehide', () => send({ type: 'leave' }));
  }

  function teardown() {
    stopLocalMedia();
    if (call.pc) {
      try { call.pc.close(); } catch (_) { /* already closed */ }
    }
    if (timerHandle) clearInterval(timerHandle);
    timerHandle = null;
    ui.timer.hidden = true;
    ui.controls.hidden = true;
    ui.prompt.hidden = true;
    for (const v of ui.grid.querySelectorAll('video')) v.srcObject = null;
    ui.grid.textContent = '';
    ui.audioSink.textContent = '';
  }

  // ---------- start ----------

  async function start() {
    wireControls();
    refreshSelfButtons();
    refreshLock();
    const classId = classIdFromPath();
    const token = readToken();
    if (!classId || !token) {
      setState('refused');
      setStatus("Lien incomplet : ouvrez la visio depuis l'application de la classe.");
      return;
    }
    if (typeof RTCPeerConnection === 'undefined' || typeof WebSocket === 'undefined') {
      setState('refused');
      setStatus('Ce navigateur ne permet pas la visio. Utilisez une version récente de Firefox ou de Chromium.');
      return;
    }

    const stream = await getLocalMedia();
    call.timings.media = performance.now();
    local.stream = stream;
    local.audioTrack = stream ? stream.getAudioTracks()[0] || null : null;
    local.videoTrack = stream ? stream.getVideoTracks()[0] || null : null;
    call.mediaMode = local.videoTrack && local.audioTrack ? 'audio+video'
      : local.audioTrack ? 'audio' : local.videoTrack ? 'video' : 'receive-only';
    refreshSelfButtons();
    showLocalPreview();

    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    call.pc = pc;
    pc.addEventListener('track', onTrack);
    pc.addEventListener('icecandidate', onLocalCandidate);
    pc.addEventListener('connectionstatechange', () => {
      trace(`pc ${pc.connectionState}`);
      if (pc.connectionState === 'connected' && call.timings.connected === undefined) {
        call.timings.connected = performance.now();
      }
      if (pc.connectionState === 'connected' && ui.alert.dataset.code === 'media_failed') hideAlert();
      if (pc.connectionState === 'failed' && (call.state === 'joined' || call.state === 'waiting' || call.state === 'admitted')) {
        showAlert("Le son et la vidéo ne passent pas : la connexion au serveur média n'a pas pu s'établir "
          + '(réseau ou pare-feu). Essayez un autre réseau ou rechargez la page.', 'media_failed');
      }
    });
    if (local.audioTrack) addSender(local.audioTrack, 'microphone', stream);
    if (local.videoTrack) addSender(local.videoTrack, 'camera', stream);
    if (!stream) {
      // Receive-only: a data channel gives the offer an m-line, so that the media connection
      // comes up at once and the others' tracks can be added to it.
      pc.createDataChannel('klass');
    }
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const tracks = declarations();

    setState('connecting');
    setStatus(stream ? 'Connexion au serveur…' : "Connexion au serveur (sans caméra ni micro : vous pourrez voir et entendre les autres)…");
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/v1/classes/${encodeURIComponent(classId)}/visio/ws`);
    call.ws = ws;
    let opened = false;
    ws.addEventListener('open', () => {
      opened = true;
      send({ type: 'join', token, sdp: offer.sdp, tracks });
    });
    ws.addEventListener('message', (ev) => onMessage(ev.data));
    ws.addEventListener('close', (ev) => {
      trace(`ws closed ${ev.code}`);
      enqueue(() => {
        if (call.state === 'left' || call.state === 'refused') return;
        setState('disconnected');
        // Never opened: the server refused the connection itself (too many joins at once from
        // here, or a surge it answers with "busy") or could not be reached.
        setStatus(opened
          ? 'La connexion au serveur a été perdue. Rechargez la page pour revenir dans la visio.'
          : "Le serveur n'a pas accepté la connexion : il est peut-être très sollicité. Réessayez dans quelques secondes en rechargeant la page.");
        teardown();
      });
    });
  }

  start().catch((err) => {
    trace(`start failed: ${err && (err.stack || err)}`);
    setState('refused');
    setStatus(`La visio n'a pas pu démarrer : ${err && err.message ? err.message : err}`);
  });
})();
