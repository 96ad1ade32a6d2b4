// Stacked bar charts drawn as SVG: one bar per interval, one coloured part per series. Small
// on purpose — the overview page needs exactly this and nothing a charting library adds.

const SVG = "http://www.w3.org/2000/svg";

function el(tag: string, attrs: Record<string, string | number>, ...children: (Node | string)[]): SVGElement {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  node.append(...children);
  return node;
}

export interface Series {
  name: string;
  /** A CSS colour (a custom property is fine). */
  colour: string;
  values: number[];
}

export interface BarChart {
  /** What the chart shows, for screen readers and as its caption. */
  title: string;
  /** The time axis: from `start` to `end` (ms since the epoch), bars `interval` ms wide. */
  start: number;
  end: number;
  interval: number;
  /** When each bar's interval ends (ms since the epoch), one per value of each series. */
  at: number[];
  /** How a time reads on the axis and on hover. */
  label: (t: number) => string;
  /** Stacked bottom to top in this order. */
  series: Series[];
}

const WIDTH = 720;
const HEIGHT = 180;
const LEFT = 36;
const TOP = 8;
const BOTTOM = 20;

/** The chart as a figure: the SVG, a caption and a legend. */
export function barChart(chart: BarChart): HTMLElement {
  const n = chart.at.length;
  const totals = chart.at.map((_, i) => chart.series.reduce((sum, s) => sum + (s.values[i] ?? 0), 0));
  const top = niceCeiling(Math.max(1, ...totals));
  const plotW = WIDTH - LEFT;
  const plotH = HEIGHT - TOP - BOTTOM;
  const span = Math.max(1, chart.end - chart.start);
  const x = (t: number) => LEFT + ((t - chart.start) / span) * plotW;
  const barW = Math.max(1, (chart.interval / span) * plotW * 0.85);
  const y = (v: number) => TOP + plotH - (v / top) * plotH;
  const svg = el("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    class: "chart",
    role: "img",
    "aria-label": `${chart.title}: ${summary(totals)}`,
  });
  for (const v of [0, top / 2, top]) {
    svg.append(
      el("line", { x1: LEFT, x2: WIDTH, y1: y(v), y2: y(v), class: "chart-grid" }),
      el("text", { x: LEFT - 4, y: y(v) + 4, "text-anchor": "end", class: "chart-axis" }, formatCount(v)),
    );
  }
  chart.at.forEach((at, i) => {
    let base = 0;
    const label = chart.label(at);
    const bar = el("g", { "data-at": label });
    const parts = chart.series.map((s) => `${s.name} ${s.values[i] ?? 0}`).join(", ");
    bar.append(el("title", {}, `until ${label}: ${parts}`));
    const left = Math.max(LEFT, x(at - chart.interval));
    for (const s of chart.series) {
      const v = s.values[i] ?? 0;
      if (v > 0) {
        bar.append(el("rect", { x: left, y: y(base + v), width: barW, height: y(base) - y(base + v), fill: s.colour }));
      }
      base += v;
    }
    svg.append(bar);
  });
  svg.append(
    el("text", { x: LEFT, y: HEIGHT - 4, class: "chart-axis" }, chart.label(chart.start)),
    el("text", { x: WIDTH, y: HEIGHT - 4, "text-anchor": "end", class: "chart-axis" }, chart.label(chart.end)),
  );
  if (n === 0) {
    svg.append(el("text", { x: LEFT + plotW / 2, y: TOP + plotH / 2, "text-anchor": "middle", class: "chart-axis" }, "No samples yet"));
  }
  const legend = document.createElement("ul");
  legend.className = "chart-legend";
  for (const s of chart.series) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "chart-swatch";
    swatch.style.background = s.colour;
    item.append(swatch, s.name);
    legend.append(item);
  }
  const figure = document.createElement("figure");
  const caption = document.createElement("figcaption");
  caption.textContent = chart.title;
  figure.append(caption, svg, legend);
  return figure;
}

/** The smallest of 1, 2, 5 × 10ⁿ at or above `v`, so the axis reads in round numbers. */
function niceCeiling(v: number): number {
  const magnitude = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * magnitude >= v) return m * magnitude;
  return 10 * magnitude;
}

function formatCount(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

/** "12 intervals, peak 12, latest 3" for the label a screen reader reads. */
function summary(totals: number[]): string {
  if (totals.length === 0) return "no samples yet";
  return `${totals.length} intervals, peak ${Math.max(...totals)}, latest ${totals[totals.length - 1]}`;
}
