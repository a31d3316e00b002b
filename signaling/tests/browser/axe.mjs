// axe-core (npm `axe-core`) on a page of the browser tests: Playwright's pages (Chromium) and
// firefox.mjs's pages (Firefox over WebDriver BiDi) alike.
//
//   const violations = await runAxe(page, 'call, phone');
//   assert.deepEqual(seriousViolations(violations), [], 'no serious or critical violation');
//
// The source is evaluated through the automation protocol (CDP or BiDi), which the pages'
// Content-Security-Policy does not govern: no <script> tag is added to the page.

import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const AXE_SOURCE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/** The rule sets run: WCAG 2.0 and 2.1, A and AA, and axe's best practices. */
const RUN_OPTIONS = {
  runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
  resultTypes: ['violations'],
};

/**
 * Runs axe-core on `page`'s document, prints each violation (id, impact, how many nodes, the
 * first selectors) under `label`, and returns the violations as
 * `[{ id, impact, help, count, targets }]`.
 */
export async function runAxe(page, label) {
  const injectAndRun = `(async () => {
    if (!window.axe) { ${AXE_SOURCE}
    }
    const r = await window.axe.run(document, ${JSON.stringify(RUN_OPTIONS)});
    return r.violations.map((v) => ({
      id: v.id, impact: v.impact, help: v.help, count: v.nodes.length,
      targets: v.nodes.slice(0, 3).map((n) => n.target.join(' ')),
    }));
  })()`;
  let violations;
  if (typeof page.addScriptTag === 'function') {
    // Playwright: a string is evaluated as an expression (Runtime.evaluate), promise awaited.
    violations = await page.evaluate(injectAndRun);
  } else {
    // firefox.mjs: evaluate(fn) calls `(${fn.toString()})(arg)`.
    violations = await page.evaluate({ toString: () => `() => ${injectAndRun}` });
  }
  const summary = violations.length === 0
    ? 'no violation'
    : violations.map((v) => `${v.id} (${v.impact}) x${v.count}: ${v.targets.join(', ')}`).join('\n    ');
  console.log(`axe [${label}]: ${violations.length} violation(s)${violations.length ? ':\n    ' : ''}${violations.length ? summary : ''}`);
  return violations;
}

/** The violations a test refuses: impact `serious` or `critical`. */
export function seriousViolations(violations) {
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}) x${v.count}: ${v.targets.join(', ')}`);
}
