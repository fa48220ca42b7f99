// Charts drawn as SVG by hand: the jobs-over-time histogram (stacked by
// status) and the usage bars of the hosts page. Each chart is an image with a
// text alternative that says what it shows.

import { h, svg } from "./dom.js";

export const STATUS_ORDER = ["failed", "cancelled", "running", "dispatched", "pending", "queued", "succeeded"];

const STEP_MS = { minute: 60e3, hour: 3600e3, day: 86400e3, week: 7 * 86400e3 };

function bucketEnd(start, interval) {
  if (interval === "month") {
    const d = new Date(start);
    return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
  }
  return start + STEP_MS[interval];
}

function niceMax(n) {
  if (n <= 5) return Math.max(n, 1);
  const power = 10 ** Math.floor(Math.log10(n));
  for (const step of [1, 2, 4, 5, 10]) if (step * power >= n) return step * power;
  return 10 * power;
}

function label(ms, interval) {
  const d = new Date(ms);
  if (interval === "minute" || interval === "hour") return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  return d.toLocaleDateString(undefined, { year: "2-digit", month: "short", day: "numeric" });
}

// series: {interval, buckets: [{start: iso, total, byStatus: {status: n} | null}]}
export function histogram(series, { width = 920, height = 180 } = {}) {
  const margin = { top: 10, right: 12, bottom: 26, left: 44 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const buckets = series.buckets.map((b) => ({ ...b, t: Date.parse(b.start) })).sort((a, b) => a.t - b.t);
  const root = svg("svg", {
    class: "histogram", viewBox: `0 0 ${width} ${height}`, width: "100%", height, role: "img", preserveAspectRatio: "none",
  });
  if (!buckets.length) {
    root.setAttribute("aria-label", "No jobs to chart.");
    root.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "axis" }, "No jobs in this range"));
    return root;
  }
  const from = buckets[0].t;
  const to = bucketEnd(buckets[buckets.length - 1].t, series.interval);
  const span = Math.max(to - from, 1);
  const x = (t) => margin.left + ((t - from) / span) * plotW;
  const peak = Math.max(...buckets.map((b) => b.total));
  const top = niceMax(peak);
  const y = (n) => margin.top + plotH - (n / top) * plotH;
  const total = buckets.reduce((sum, b) => sum + b.total, 0);
  root.setAttribute(
    "aria-label",
    `Histogram of ${total} jobs per ${series.interval} from ${label(from, series.interval)} to ${label(to, series.interval)}; busiest ${series.interval}: ${peak} jobs.`,
  );
  // Grid and y axis.
  // Counts are whole numbers: a middle line only where it is one.
  for (const n of Number.isInteger(top / 2) ? [0, top / 2, top] : [0, top]) {
    root.append(svg("line", { x1: margin.left, x2: width - margin.right, y1: y(n), y2: y(n), class: "grid" }));
    root.append(svg("text", { x: margin.left - 6, y: y(n) + 4, "text-anchor": "end", class: "axis" }, n.toLocaleString()));
  }
  // Bars, stacked by status when the breakdown is known.
  for (const b of buckets) {
    const x0 = x(b.t);
    const w = Math.max(1, x(bucketEnd(b.t, series.interval)) - x0 - (plotW / buckets.length > 6 ? 1 : 0));
    const group = svg("g", { class: "bar" }, svg("title", {}, `${label(b.t, series.interval)}: ${b.total} jobs${breakdownText(b.byStatus)}`));
    if (b.byStatus) {
      let base = 0;
      for (const status of STATUS_ORDER) {
        const n = b.byStatus[status] ?? 0;
        if (!n) continue;
        group.append(svg("rect", { x: x0, width: w, y: y(base + n), height: Math.max(0, y(base) - y(base + n)), class: `fill-${status}` }));
        base += n;
      }
      const rest = b.total - base;
      if (rest > 0) group.append(svg("rect", { x: x0, width: w, y: y(base + rest), height: y(base) - y(base + rest), class: "fill-other" }));
    } else {
      group.append(svg("rect", { x: x0, width: w, y: y(b.total), height: y(0) - y(b.total), class: "fill-all" }));
    }
    root.append(group);
  }
  // Time axis: a handful of labels.
  const ticks = Math.min(6, buckets.length + 1);
  for (let i = 0; i < ticks; i += 1) {
    const t = from + (span * i) / Math.max(ticks - 1, 1);
    const anchor = i === 0 ? "start" : i === ticks - 1 ? "end" : "middle";
    root.append(svg("text", { x: x(t), y: height - 8, "text-anchor": anchor, class: "axis" }, label(t, series.interval)));
  }
  return root;
}

function breakdownText(byStatus) {
  if (!byStatus) return "";
  const parts = STATUS_ORDER.filter((s) => byStatus[s]).map((s) => `${byStatus[s]} ${s}`);
  return parts.length ? ` (${parts.join(", ")})` : "";
}

export function legend(statuses) {
  return h(
    "ul",
    { class: "legend", "aria-label": "Colours of the histogram" },
    statuses.map((s) => h("li", {}, h("span", { class: `swatch fill-${s}`, "aria-hidden": "true" }), s)),
  );
}

// A horizontal usage bar: used of total, with an optional watermark line.
// Returns {element, fraction}.
export function usageBar({ used, total, watermark = null, name, text, width = 220, height = 18 }) {
  const fraction = total ? Math.min(used / total, 1) : 0;
  const over = watermark !== null && total && (100 * used) / total >= watermark;
  const root = svg("svg", {
    class: `usage${over ? " over" : ""}`, viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": `${name}: ${text}${watermark !== null ? `; high watermark ${watermark}%` : ""}`,
    "data-fraction": fraction.toFixed(4),
  });
  root.append(svg("rect", { x: 0, y: 0, width, height, rx: 3, class: "track" }));
  root.append(svg("rect", { x: 0, y: 0, width: width * fraction, height, rx: 3, class: "used" }));
  if (watermark !== null) {
    const wx = (width * watermark) / 100;
    root.append(svg("line", { x1: wx, x2: wx, y1: -1, y2: height + 1, class: "watermark" }, svg("title", {}, `high watermark ${watermark}%`)));
  }
  return { element: root, fraction, over };
}
