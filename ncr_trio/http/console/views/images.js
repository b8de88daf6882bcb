// An image's artifacts and tags, and one artifact with its tags.

import { del, get, imagePath, post, seg } from "../api.js";
import {
  NONE, attempt, badge, button, bytes, confirm, details, field, flash, h, link, mediaType, pager,
  platforms, replace, shortDigest, table, time,
} from "../dom.js";
import {
  artifactHref, breadcrumbs, deleteImage, deleteTag, imageHref, registryHref, tagSearch,
} from "./registries.js";
import { reportSection, scanButton, vulnerabilityCell } from "./scans.js";
import { accessoriesSection, signaturesSection, signedBadge } from "./trust.js";

function imageApi(registry, image) {
  return `/registries/${seg(registry)}/images/${imagePath(image)}`;
}

// An image's config type is its artifact type too (as the referrers API reports it): name the
// manifest's kind for images, the artifact type for everything else (Helm charts, signatures...).
const IMAGE_CONFIGS = new Set(["application/vnd.oci.image.config.v1+json",
  "application/vnd.docker.container.image.v1+json"]);
const ARTIFACT_TYPES = {
  "application/vnd.cncf.helm.config.v1+json": "Helm chart",
  "application/vnd.dev.cosign.artifact.sig.v1+json": "cosign signature",
  "application/vnd.dev.sigstore.bundle.v0.3+json": "Sigstore bundle",
};

function typeOf(artifact) {
  const type = artifact.artifact_type;
  const label = type && !IMAGE_CONFIGS.has(type) ? ARTIFACT_TYPES[type] || type : mediaType(artifact.media_type);
  return h("span", { title: [artifact.media_type, type].filter(Boolean).join("\n") }, label);
}

function tagList(names) {
  if (!names || names.length === 0) return NONE;
  return h("ul", { class: "tag-list" }, names.map((name) => h("li", {}, badge(name, "tag"))));
}

export async function imageView(ctx) {
  const [registry, image] = ctx.params;
  let info;
  try {
    info = await get(imageApi(registry, image));
  } catch (error) {
    if (error.status !== 404) throw error;
    return h("section", {},
      breadcrumbs([["#/registries", "Registries"], [registryHref(registry), registry]], image),
      h("h1", {}, `Image ${registry}/${image}`),
      h("p", {}, `${registry}/${image} does not exist (any more).`),
      h("p", {}, link(registryHref(registry), `Back to the images of ${registry}`)));
  }
  const canManage = ctx.can("manage", registry);
  const results = h("div", { class: "results" });
  let page = 1;

  async function load() {
    const answer = await get(`${imageApi(registry, image)}/artifacts`, { page });
    const rows = answer.artifacts.map((a) => {
      const cells = [
        link(artifactHref(registry, image, a.digest), h("code", { title: a.digest }, shortDigest(a.digest))),
        typeOf(a),
        bytes(a.size),
        platforms(a.platforms),
        tagList(a.tags),
        time(a.pushed_at),
        time(a.pulled_at, "never"),
        signedBadge(a),
        vulnerabilityCell(a),
      ];
      if (canManage) {
        cells.push(h("span", { class: "row-actions" }, scanButton(imageApi(registry, image), a, () => attempt(load)),
          " ", button("Delete", () => deleteArtifact(ctx, registry, image, a.digest),
          { kind: "danger", "aria-label": `Delete artifact ${a.digest}` })));
      }
      return cells;
    });
    const headers = ["Digest", "Type", "Size", "Platforms", "Tags", "Pushed", "Last pull", "Signed", "Vulnerabilities"];
    if (canManage) headers.push("Actions");
    replace(results, table(`Artifacts of ${registry}/${image}`, headers, rows, "No artifacts."),
      pager(answer, (p) => { page = p; attempt(load); }, "artifacts"));
  }
  await load();

  const tagParts = await tagSearch(ctx, { path: `${imageApi(registry, image)}/tags`, registry, showImage: false,
    title: `Tags of ${registry}/${image}` });
  return h("section", {},
    breadcrumbs([["#/registries", "Registries"], [registryHref(registry), registry]], image),
    h("h1", {}, `Image ${registry}/${image}`),
    details([
      ["Repository", h("code", {}, info.repository)],
      ["Artifacts", String(info.artifacts)],
      ["Tags", String(info.tags)],
      ["Size", bytes(info.size)],
      ["Last push", time(info.pushed_at)],
      ["Last pull", time(info.pulled_at, "never")],
    ]),
    canManage ? h("div", { class: "actions" },
      button("Delete image", () => deleteImage(ctx, registry, image, registryHref(registry)), { kind: "danger" }))
      : null,
    h("section", { "aria-labelledby": "artifacts-title" }, h("h2", { id: "artifacts-title" }, "Artifacts"), results),
    h("section", { "aria-labelledby": "image-tags-title" }, h("h2", { id: "image-tags-title" }, "Tags"), tagParts));
}

async function deleteArtifact(ctx, registry, image, digest, after) {
  const ok = await confirm(`Delete artifact ${shortDigest(digest)}?`,
    `The artifact ${registry}/${image}@${digest}, every tag pointing to it and its accessories (signatures, ` +
    "attestations, referrers) will be deleted. " +
    "This cannot be undone.", "Delete artifact");
  if (!ok) return;
  await attempt(async () => {
    await del(`${imageApi(registry, image)}/artifacts/${seg(digest)}`);
    flash(`Artifact ${shortDigest(digest)} deleted.`);
    if (!after) {
      ctx.reload();
      return;
    }
    try {
      await get(imageApi(registry, image));
      ctx.go(after);
    } catch {
      ctx.go(registryHref(registry)); // that was the image's last artifact: the image is gone
    }
  });
}

export async function artifactView(ctx) {
  const [registry, image, digest] = ctx.params;
  const a = await get(`${imageApi(registry, image)}/artifacts/${seg(digest)}`);
  const canManage = ctx.can("manage", registry);
  const rows = a.tags.map((name) => {
    const cells = [name];
    if (canManage) {
      cells.push(button("Delete", () => deleteTag(ctx, registry, image, name),
        { kind: "danger", "aria-label": `Delete tag ${name}` }));
    }
    return cells;
  });
  let addTag = null;
  if (canManage) {
    const name = h("input", { name: "tag", required: true, maxlength: 128, pattern: "[A-Za-z0-9_][A-Za-z0-9._\\-]{0,127}",
      autocomplete: "off" });
    addTag = h("form", { class: "inline", "aria-labelledby": "add-tag-title" },
      h("h3", { id: "add-tag-title", class: "visually-hidden" }, "Add a tag"),
      field("New tag", name), h("button", { type: "submit" }, "Add tag"));
    addTag.addEventListener("submit", (event) => {
      event.preventDefault();
      attempt(async () => {
        const tag = await post(`${imageApi(registry, image)}/artifacts/${seg(digest)}/tags`, { name: name.value.trim() });
        flash(`Tag ${tag.name} now points to ${shortDigest(digest)}.`);
        ctx.reload();
      });
    });
  }
  return h("section", {},
    breadcrumbs([["#/registries", "Registries"], [registryHref(registry), registry], [imageHref(registry, image), image]],
      shortDigest(digest)),
    h("h1", {}, `Artifact ${shortDigest(digest)}`),
    details([
      ["Image", link(imageHref(registry, image), `${registry}/${image}`)],
      ["Digest", h("code", { class: "digest" }, a.digest)],
      ["Media type", h("code", {}, a.media_type || NONE)],
      ["Artifact type", a.artifact_type ? h("code", {}, a.artifact_type) : NONE],
      ["Size", bytes(a.size)],
      ["Platforms", platforms(a.platforms)],
      ["Subject", a.subject ? link(artifactHref(registry, image, a.subject), h("code", {}, a.subject)) : NONE],
      ["Pushed", time(a.pushed_at)],
      ["Last pull", time(a.pulled_at, "never")],
      ["Signed", signedBadge(a)],
      ["Vulnerabilities", vulnerabilityCell(a)],
      ["Pull with", h("code", {}, `${window.location.host}/${registry}/${image}@${a.digest}`)],
    ]),
    canManage ? h("div", { class: "actions" },
      scanButton(imageApi(registry, image), a, () => ctx.reload()), " ", button("Delete artifact",
        () => deleteArtifact(ctx, registry, image, a.digest, imageHref(registry, image)), { kind: "danger" })) : null,
    a.signed === null ? null : await signaturesSection(imageApi(registry, image), a.digest),
    accessoriesSection((d) => artifactHref(registry, image, d), a),
    a.scan_status === null ? null : await reportSection(imageApi(registry, image), a.digest),
    h("section", { "aria-labelledby": "artifact-tags-title" },
      h("h2", { id: "artifact-tags-title" }, "Tags"),
      table(`Tags of ${shortDigest(digest)}`, canManage ? ["Tag", "Actions"] : ["Tag"], rows, "This artifact has no tags."),
      addTag));
}
