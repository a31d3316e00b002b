// Every text of the media page, in French and English. French is the default; English when the
// browser prefers it to French (navigator.languages).

const FR = {
  title: 'Photos et vidéos de la classe',
  loading: 'Chargement…',
  noToken: 'Ce lien ne contient pas de jeton : rouvrez-le depuis l’application de la classe.',
  whoTeacher: (name) => `${name}, enseignant·e : vous préparez et publiez les photos et vidéos.`,
  whoParent: (name) => `${name} : les photos et vidéos publiées par l’enseignant·e.`,
  newPostTitle: 'Nouvelle publication',
  draftTitle: 'Publication en préparation',
  newPost: 'Commencer une publication',
  addFiles: 'Ajouter des photos et des vidéos',
  addHint: 'Les visages sont floutés automatiquement. Vérifiez chaque fichier avant de publier.',
  resumeHint: (n) => `${n} envoi(s) interrompu(s) : choisissez de nouveau le même fichier pour reprendre là où il s’est arrêté.`,
  publish: 'Publier pour la classe',
  cancelUpload: (name) => `Annuler l’envoi de ${name}`,
  cancel: 'Annuler',
  published: 'Publié : les familles le voient.',
  publishNotReady: 'Tous les fichiers doivent être prêts avant de publier.',
  feedTitle: 'Publications',
  feedEmpty: 'Aucune publication pour le moment.',
  postOf: (date) => `Publié le ${date}`,
  draftOf: (date) => `Brouillon du ${date}`,
  photo: 'Photo',
  video: 'Vidéo',
  photoN: (n) => `Photo ${n}`,
  videoN: (n) => `Vidéo ${n}`,
  download: 'Télécharger',
  downloadOf: (what) => `Télécharger : ${what}`,
  uploadOf: (name) => `Envoi de ${name}`,
  processingOf: (name) => `Traitement de ${name}`,
  state: {
    waiting: 'En attente',
    uploading: 'Envoi',
    uploaded: 'Envoyé, en attente du traitement',
    processing: 'Floutage des visages',
    ready: 'Prêt',
    failed: 'Échec',
    retrying: 'Réseau coupé : reprise…',
  },
  percent: (n) => `${n} %`,
  reviewTitle: (what) => `Vérification : ${what}`,
  facesFound: (n, frames) =>
    n === 0 ? 'Aucun visage détecté.' : frames > 1 ? `${n} visages détectés sur ${frames} images analysées.` : `${n} visage(s) détecté(s).`,
  facesAt: (n, t) => `${n} visage(s) à ${t} s`,
  reviewHint: 'Cadres pleins : visages trouvés (floutés). Cadres pointillés : vos zones. Dessinez un rectangle sur l’image pour flouter une zone oubliée, ou saisissez-la ci-dessous.',
  regionsTitle: 'Zones à flouter en plus',
  noRegions: 'Aucune zone ajoutée.',
  regionLabel: (i, r) => `Zone ${i} : x ${r.x} %, y ${r.y} %, ${r.width} × ${r.height} %` + (r.times ? `, de ${r.start} s à ${r.end} s` : ''),
  removeRegion: (i) => `Retirer la zone ${i}`,
  fieldX: 'Gauche (%)',
  fieldY: 'Haut (%)',
  fieldWidth: 'Largeur (%)',
  fieldHeight: 'Hauteur (%)',
  fieldStart: 'Début (s)',
  fieldEnd: 'Fin (s)',
  playPause: 'Lire ou mettre en pause',
  seek: (what) => `Position dans ${what}`,
  addRegion: 'Ajouter la zone',
  regionInvalid: 'Zone invalide : les valeurs vont de 0 à 100 %, la zone doit rester dans l’image, et le début précéder la fin.',
  rerun: 'Flouter à nouveau avec ces zones',
  rerunning: 'Nouveau floutage en cours…',
  drawArea: (what) => `${what} : dessinez un rectangle avec la souris ou le doigt pour ajouter une zone à flouter`,
  role: { teacher: 'enseignant·e', admin: 'administrateur·rice', parent: 'parent' },
  errors: {
    unauthorized: 'Votre lien a expiré ou n’est pas valable : rouvrez-le depuis l’application de la classe.',
    not_a_member: 'Vous n’êtes pas membre de cette classe.',
    forbidden_role: 'Seuls les enseignant·es publient des photos et des vidéos.',
    too_many_photos: 'Cette publication a déjà le nombre maximal de photos de votre formule.',
    too_many_videos: 'Cette publication a déjà le nombre maximal de vidéos de votre formule.',
    video_too_long: 'Cette vidéo est plus longue que ce que permet votre formule.',
    storage_quota_exceeded: 'L’espace de stockage de la classe est plein.',
    media_too_large: 'Ce fichier est trop volumineux.',
    unsupported_media: 'Ce format de fichier n’est pas accepté.',
    corrupt_media: 'Ce fichier est endommagé.',
    media_not_ready: 'Un fichier n’est pas encore prêt.',
    rate_limited: 'Trop de demandes : réessayez dans un instant.',
    network: 'Le réseau ne répond pas.',
  },
  unknownError: (code, message) => `Erreur (${code}) : ${message || ''}`,
};

const EN = {
  title: 'Class photos and videos',
  loading: 'Loading…',
  noToken: 'This link has no token: open it again from the class app.',
  whoTeacher: (name) => `${name}, teacher: you prepare and publish photos and videos.`,
  whoParent: (name) => `${name}: the photos and videos the teacher published.`,
  newPostTitle: 'New post',
  draftTitle: 'Post being prepared',
  newPost: 'Start a post',
  addFiles: 'Add photos and videos',
  addHint: 'Faces are blurred automatically. Check each file before publishing.',
  resumeHint: (n) => `${n} interrupted upload(s): choose the same file again to resume where it stopped.`,
  publish: 'Publish to the class',
  cancelUpload: (name) => `Cancel the upload of ${name}`,
  cancel: 'Cancel',
  published: 'Published: families can see it.',
  publishNotReady: 'Every file must be ready before publishing.',
  feedTitle: 'Posts',
  feedEmpty: 'No post yet.',
  postOf: (date) => `Published on ${date}`,
  draftOf: (date) => `Draft of ${date}`,
  photo: 'Photo',
  video: 'Video',
  photoN: (n) => `Photo ${n}`,
  videoN: (n) => `Video ${n}`,
  download: 'Download',
  downloadOf: (what) => `Download: ${what}`,
  uploadOf: (name) => `Uploading ${name}`,
  processingOf: (name) => `Processing ${name}`,
  state: {
    waiting: 'Waiting',
    uploading: 'Uploading',
    uploaded: 'Uploaded, waiting for processing',
    processing: 'Blurring faces',
    ready: 'Ready',
    failed: 'Failed',
    retrying: 'Network lost: resuming…',
  },
  percent: (n) => `${n}%`,
  reviewTitle: (what) => `Review: ${what}`,
  facesFound: (n, frames) =>
    n === 0 ? 'No face detected.' : frames > 1 ? `${n} faces detected in ${frames} analysed frames.` : `${n} face(s) detected.`,
  facesAt: (n, t) => `${n} face(s) at ${t} s`,
  reviewHint: 'Solid boxes: faces found (blurred). Dashed boxes: your regions. Draw a rectangle on the picture to blur a missed area, or type it below.',
  regionsTitle: 'Extra regions to blur',
  noRegions: 'No region added.',
  regionLabel: (i, r) => `Region ${i}: x ${r.x}%, y ${r.y}%, ${r.width} × ${r.height}%` + (r.times ? `, from ${r.start} s to ${r.end} s` : ''),
  removeRegion: (i) => `Remove region ${i}`,
  fieldX: 'Left (%)',
  fieldY: 'Top (%)',
  fieldWidth: 'Width (%)',
  fieldHeight: 'Height (%)',
  fieldStart: 'Start (s)',
  fieldEnd: 'End (s)',
  playPause: 'Play or pause',
  seek: (what) => `Position in ${what}`,
  addRegion: 'Add region',
  regionInvalid: 'Invalid region: values go from 0 to 100%, the region must stay inside the picture, and start must come before end.',
  rerun: 'Blur again with these regions',
  rerunning: 'Blurring again…',
  drawArea: (what) => `${what}: draw a rectangle with the mouse or a finger to add a region to blur`,
  role: { teacher: 'teacher', admin: 'admin', parent: 'parent' },
  errors: {
    unauthorized: 'Your link expired or is not valid: open it again from the class app.',
    not_a_member: 'You are not a member of this class.',
    forbidden_role: 'Only teachers publish photos and videos.',
    too_many_photos: 'This post already has as many photos as your plan allows.',
    too_many_videos: 'This post already has as many videos as your plan allows.',
    video_too_long: 'This video is longer than your plan allows.',
    storage_quota_exceeded: 'The class storage is full.',
    media_too_large: 'This file is too large.',
    unsupported_media: 'This file format is not accepted.',
    corrupt_media: 'This file is damaged.',
    media_not_ready: 'A file is not ready yet.',
    rate_limited: 'Too many requests: try again in a moment.',
    network: 'The network does not answer.',
  },
  unknownError: (code, message) => `Error (${code}): ${message || ''}`,
};

function preferredLanguage() {
  const wanted = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'fr'];
  for (const tag of wanted) {
    const base = String(tag).toLowerCase().split('-')[0];
    if (base === 'fr') return 'fr';
    if (base === 'en') return 'en';
  }
  return 'fr';
}

export const lang = preferredLanguage();
export const S = lang === 'en' ? EN : FR;

export function errorText(code, message) {
  return S.errors[code] || S.unknownError(code, message);
}

export function dateText(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleString(lang === 'en' ? 'en-GB' : 'fr-FR', {
    dateStyle: 'long',
    timeStyle: 'short',
  });
}

/** Fills the page's static texts: `data-text="key"` (and `data-label="key"` for aria-label). */
export function applyStaticStrings(root) {
  document.documentElement.lang = lang;
  document.title = S.title;
  for (const el of root.querySelectorAll('[data-text]')) el.textContent = S[el.dataset.text];
  for (const el of root.querySelectorAll('[data-label]')) el.setAttribute('aria-label', S[el.dataset.label]);
}
