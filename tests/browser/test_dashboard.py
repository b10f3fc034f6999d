#!/usr/bin/env python3
"""labdb serve's dashboard in a real browser (headless Chromium driven by Selenium 4).

A labrun training run keeps writing a results database while the page is open; next to it are a
few short finished runs of the same experiment (an ablation over attention.type) and runs whose
names are hostile HTML. The test loads the runs table, plots two runs and checks the chart's data
(Chart.js's own datasets, read through window.labdb.charts, not pixels) against the JSON API,
waits for a new point of the live run, checks that hostile names show as text, opens a run page
and the ablation view, and saves a screenshot of each view.

  test_dashboard.py --build BUILD_DIR --source SOURCE_DIR [--artifacts DIR]

Prints "skipped: <why>" and exits 0 only when Chromium, chromedriver or selenium is missing (or
labdb was built without serve); any other problem is a failure (exit 1).
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HOSTILE_NAMES = ['<script>alert(1)</script>', '<img src=x onerror=alert(2)>"\'&amp;']


def skip(why):
    print('skipped: ' + why)
    sys.exit(0)


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def wait_for(what, predicate, timeout=20.0, interval=0.1):
    """The first truthy value of predicate() within timeout seconds; Failure naming `what` after."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Failure:
            raise
        except Exception as error:  # a stale element or a page still loading: try again
            last_error = error
        time.sleep(interval)
    raise Failure('timed out after %.0f s waiting for %s%s' % (timeout, what,
                                                              ' (last error: %s)' % last_error if last_error else ''))


def run(command, timeout=120, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        raise Failure('%s exited with %d\nstdout:\n%s\nstderr:\n%s' % (' '.join(command), result.returncode,
                                                                      result.stdout[-3000:], result.stderr[-3000:]))
    return result.stdout


def get_json(base_url, path):
    with urllib.request.urlopen(base_url + path, timeout=20) as response:
        return json.load(response)


def labrun_command(labrun, source, db, *overrides):
    # The copy task makes its data from the seed: no dataset needed. One thread, so the live run
    # and the short runs share the machine's cores politely.
    return [labrun, os.path.join(source, 'experiments', 'copy.ini'), '--no-progress', 'experiment.db=' + db,
            'backend.threads=1', 'train.log_every=10', 'train.eval_every=20'] + list(overrides)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--build', required=True, help='the CMake build folder (bin/labdb, bin/labrun)')
    parser.add_argument('--source', required=True, help='the source folder (experiments/)')
    parser.add_argument('--artifacts', help='where the screenshots go (default BUILD/tests/browser_artifacts)')
    args = parser.parse_args()

    try:
        from selenium import webdriver
        from selenium.common.exceptions import NoAlertPresentException
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
    except ImportError:
        skip('selenium is not installed for %s (pip install selenium)' % sys.executable)
    chromium = next((path for path in map(shutil.which, ['chromium', 'chromium-browser', 'google-chrome']) if path), None)
    if not chromium:
        skip('no chromium found (apt-get install chromium)')
    chromedriver = shutil.which('chromedriver')
    if not chromedriver:
        skip('no chromedriver found (apt-get install chromium-driver)')
    labdb = os.path.join(args.build, 'bin', 'labdb')
    labrun = os.path.join(args.build, 'bin', 'labrun')
    writer = os.path.join(args.build, 'tests', 'lab_write_metrics')
    for binary in (labdb, labrun, writer):
        check(os.access(binary, os.X_OK), '%s is not built; build labdb, labrun, lab_plugins and lab_tests_e2e' % binary)
    serve_help = subprocess.run([labdb, 'serve', '--help'], capture_output=True, text=True)
    if 'JSON API' not in serve_help.stdout:
        skip('labdb serve not built (apt-get install libcpp-httplib-dev libjs-chart.js, then configure again)')
    # Selenium reaches chromedriver at http://localhost:PORT; without a localhost entry (a bare
    # chroot has no /etc/hosts) it can only say "Can not connect to the Service".
    try:
        socket.getaddrinfo('localhost', None)
    except socket.gaierror as error:
        print('FAIL: the name localhost does not resolve (%s), and Selenium reaches chromedriver through it; '
              'hint: add "127.0.0.1 localhost" to /etc/hosts' % error)
        return 1
    artifacts = args.artifacts or os.path.join(args.build, 'tests', 'browser_artifacts')
    os.makedirs(artifacts, exist_ok=True)
    for name in os.listdir(artifacts):
        if name.endswith('.png'):
            os.remove(os.path.join(artifacts, name))

    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix='labdb_browser_')
    db = os.path.join(workdir, 'results', 'lab.db')
    processes = []
    driver = None
    try:
        # The finished runs of the ablation: softmax with seeds 1 and 2, linear with seed 1.
        for attention, seed in (('softmax', 1), ('linear', 1), ('softmax', 2)):
            run(labrun_command(labrun, args.source, db, 'train.steps=40', 'attention.type=' + attention,
                               'experiment.seed=%d' % seed), cwd=workdir)
        for name in HOSTILE_NAMES:
            run([writer, '--db', db, '--name', name, '--metrics', '30', '--flush-every', '10'])
        # The live run: far more steps than the test lasts; it is stopped at the end.
        live_log = open(os.path.join(workdir, 'live.log'), 'w')
        live = subprocess.Popen(labrun_command(labrun, args.source, db, 'train.steps=200000', 'experiment.name=copy_live',
                                               'train.eval_every=50'),
                                cwd=workdir, stdout=live_log, stderr=subprocess.STDOUT)
        processes.append(live)

        server = subprocess.Popen([labdb, 'serve', '--db', db, '--port', '0'], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        processes.append(server)
        first_line = server.stdout.readline()
        match = re.match(r'labdb serve: (http://127\.0\.0\.1:\d+/) \(databases: (.*)\)$', first_line.strip())
        check(match, 'unexpected first line of labdb serve: %r' % first_line)
        check(match.group(2) == db, 'the line names the databases %r, not %r' % (match.group(2), db))
        base_url = match.group(1).rstrip('/')

        runs = wait_for('the live run to log', lambda: (lambda rows: rows if any(
            r['name'] == 'copy_live' and (r['steps'] or 0) >= 20 for r in rows) else None)(get_json(base_url, '/api/runs')),
            timeout=60)
        by_name = {}
        for row in runs:
            by_name.setdefault(row['name'], []).append(row)
        soft_1 = next(r for r in by_name['copy'] if r['params'].get('attention.type') == 'softmax'
                      and r['params'].get('experiment.seed') == '1')
        linear_1 = next(r for r in by_name['copy'] if r['params'].get('attention.type') == 'linear')
        live_row = by_name['copy_live'][0]
        check(live_row['status'] == 'running', 'the live run is %s, not running' % live_row['status'])

        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu',
                     '--window-size=1440,1100', '--force-device-scale-factor=1'):
            options.add_argument(flag)
        options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
        driver = webdriver.Chrome(service=Service(chromedriver), options=options)
        driver.set_page_load_timeout(30)

        def no_alert():
            try:
                text = driver.switch_to.alert.text
            except NoAlertPresentException:
                return
            raise Failure('the page opened an alert (%r): data was run as code' % text)

        def js(script, *arguments):
            return driver.execute_script(script, *arguments)

        # The runs table is rebuilt at every poll, so an element found a moment ago may be gone:
        # these find and act in one step inside the page.
        def click(selector):
            check(js('const e = document.querySelector(arguments[0]); if (e) e.click(); return !!e', selector),
                  'nothing on the page matches %s' % selector)

        def text_of(selector):
            return js('const e = document.querySelector(arguments[0]); return e ? e.textContent : null', selector)

        # ---- the runs table ----
        driver.get(base_url + '/')
        wait_for('the runs table', lambda: js("return window.labdb && window.labdb.view && window.labdb.view.name === 'runs'"
                                               " && document.querySelectorAll('#runs-table tbody tr').length"))
        table_rows = js("return document.querySelectorAll('#runs-table tbody tr').length")
        api_runs = get_json(base_url, '/api/runs')
        check(table_rows == len(api_runs), 'the table has %d rows, the API %d runs' % (table_rows, len(api_runs)))
        for row in api_runs:
            key = '%d:%d' % (row['db'], row['id'])
            name = text_of('tr[data-run="%s"] td[data-column="name"]' % key)
            check(name == row['name'], 'run %s shows the name %r, not %r' % (key, name, row['name']))
            status = text_of('tr[data-run="%s"] td[data-column="status"]' % key)
            check(status == row['status'], 'run %s shows the status %r, not %r' % (key, status, row['status']))
        for name in HOSTILE_NAMES:
            check(name in by_name, 'the hostile run %r is missing' % name)
        check(js("return document.querySelectorAll('#view script, #view img').length") == 0,
              'a run name became an element of the page')
        no_alert()

        # ---- sorting and filtering ----
        click('th[data-sort="id"]')  # id is the default: now descending
        first_id = int(text_of('#runs-table tbody tr td[data-column="id"]'))
        check(first_id == max(r['id'] for r in api_runs), 'sorting by id descending puts run %d first' % first_id)
        click('th[data-sort="id"]')
        driver.find_element(By.CSS_SELECTOR, '#filter-status option[value="running"]').click()
        wait_for('the status filter', lambda: len(driver.find_elements(By.CSS_SELECTOR, '#runs-table tbody tr')) == 1)
        driver.find_element(By.CSS_SELECTOR, '#filter-status option[value=""]').click()
        wait_for('the unfiltered table', lambda: len(driver.find_elements(By.CSS_SELECTOR, '#runs-table tbody tr')) ==
                 len(api_runs))

        # ---- two runs on the chart ----
        for row in (soft_1, linear_1):
            click('input.select-run[data-run="0:%d"]' % row['id'])
        metric = js('return window.labdb.state.metric')
        datasets_js = ('return window.labdb.charts.curves ? window.labdb.charts.curves.data.datasets.map(d => '
                       '({key: d.runKey, label: d.label, data: d.data.map(p => [p.x, p.y])})) : []')
        datasets = wait_for('two runs on the chart', lambda: (lambda ds: ds if len(ds) == 2 and all(d['data'] for d in ds)
                                                              else None)(js(datasets_js)))
        for dataset, row in zip(datasets, (soft_1, linear_1)):
            check(dataset['key'] == '0:%d' % row['id'], 'dataset %r is not run %d' % (dataset['key'], row['id']))
            points = get_json(base_url, '/api/metrics?db=0&run=%d&name=%s' % (row['id'], metric))['points']
            expected = [[p['step'], p['value']] for p in points]
            check(len(expected) >= 4, 'run %d logged only %d points of %s' % (row['id'], len(expected), metric))
            check(dataset['data'] == expected, 'the chart of run %d has %r, the API %r' % (row['id'], dataset['data'],
                                                                                       expected))
        # The legend names each run by the parameters that differ between the two (run_labels, as
        # `labdb curves` names them): attention.type among them, the seed (equal) not.
        compared = get_json(base_url, '/api/compare?run=0:%d&run=0:%d' % (soft_1['id'], linear_1['id']))
        for dataset, row, expected in zip(datasets, (soft_1, linear_1), compared):
            label = dataset['label']
            check(label == expected['label'], 'legend %r, /api/compare says %r' % (label, expected['label']))
            check('attention.type=' + row['params']['attention.type'] in label.split(' ') and 'experiment.seed' not in label,
                  'legend %r does not name the run by its attention.type alone' % label)

        # ---- log scale and smoothing change what is drawn, not the data ----
        driver.find_element(By.ID, 'log-scale').click()
        wait_for('a log scale', lambda: js('return window.labdb.charts.curves.options.scales.y.type') == 'logarithmic')
        js("const s = document.getElementById('smoothing'); s.value = '0.9'; s.dispatchEvent(new Event('input'));")
        raw = [p[1] for p in datasets[0]['data']]
        smoothed = wait_for('smoothed curves', lambda: (lambda ys: ys if ys != raw else None)(
            js('return window.labdb.charts.curves.data.datasets[0].data.map(p => p.y)')))
        check(len(smoothed) == len(raw) and abs(smoothed[0] - raw[0]) < 1e-9 and
              all(min(raw) - 1e-9 <= y <= max(raw) + 1e-9 for y in smoothed),
              'EMA smoothing keeps the first point and stays within the raw range: %r vs %r' % (smoothed, raw))
        js("const s = document.getElementById('smoothing'); s.value = '0'; s.dispatchEvent(new Event('input'));")
        driver.find_element(By.ID, 'log-scale').click()
        wait_for('raw values on a linear scale', lambda: js(
            'const c = window.labdb.charts.curves; return c.options.scales.y.type === "linear" && '
            'c.data.datasets[0].data.map(p => p.y)') == raw)

        # ---- grouped: one mean line and band per attention.type, as `labdb curves --by` draws them ----
        soft_2 = next(r for r in by_name['copy'] if r['params'].get('attention.type') == 'softmax'
                      and r['params'].get('experiment.seed') == '2')
        click('input.select-run[data-run="0:%d"]' % soft_2['id'])
        wait_for('attention.type among the group-by choices', lambda: js(
            "return [...document.querySelectorAll('#group-by option')].some(o => o.value === 'attention.type')"))
        js("const s = document.getElementById('group-by'); s.value = 'attention.type';"
           " s.dispatchEvent(new Event('change'));")
        means_js = ('return window.labdb.charts.curves.data.datasets.filter(d => !d.isBand)'
                    '.map(d => ({label: d.label, data: d.data.map(p => [p.x, p.y])}))')
        means = wait_for('two group means on the chart', lambda: (lambda ds: ds if len(ds) == 2 and all(
            '(n=' in d['label'] for d in ds) else None)(js(means_js)))
        expected = get_json(base_url, '/api/curves?db=0&run=%d&run=%d&run=%d&metric=%s&by=attention.type' % (
            soft_1['id'], linear_1['id'], soft_2['id'], metric))
        check(len(expected['series']) == 2, '/api/curves has %d groups, not 2' % len(expected['series']))
        for drawn, series in zip(means, expected['series']):
            check(drawn['label'] == series['label'], 'group legend %r, /api/curves says %r' % (drawn['label'],
                                                                                                 series['label']))
            check(drawn['data'] == [[p['x'], p['y']] for p in series['points']],
                  'the mean line of %s differs from /api/curves' % series['label'])
        softmax = next(d for d in means if d['label'].startswith('attention.type=softmax'))
        check(softmax['label'] == 'attention.type=softmax (n=2)', 'the softmax group is %r' % softmax['label'])
        values = [{p['step']: p['value'] for p in get_json(base_url, '/api/metrics?db=0&run=%d&name=%s' % (
            row['id'], metric))['points']} for row in (soft_1, soft_2)]
        step, mean = softmax['data'][-1]
        check(abs(mean - (values[0][step] + values[1][step]) / 2) < 1e-12,
              'the softmax mean at step %d is %r, not the mean of its two runs %r' % (step, mean, values))
        bands = js('return window.labdb.charts.curves.data.datasets.filter(d => d.isBand).length')
        check(bands == 4, 'expected a band (two edges) per group, found %d band datasets' % bands)
        driver.save_screenshot(os.path.join(artifacts, 'labdb_serve_groups.png'))
        js("const s = document.getElementById('group-by'); s.value = ''; s.dispatchEvent(new Event('change'));")
        click('input.select-run[data-run="0:%d"]' % soft_2['id'])
        wait_for('one line per run again', lambda: js(
            'const ds = window.labdb.charts.curves.data.datasets; return ds.length === 2 && ds.every(d => d.runKey)'))

        # ---- the live run: a new point appears while it writes ----
        live_key = '0:%d' % live_row['id']
        click('input.select-run[data-run="%s"]' % live_key)
        last_step_js = ('const d = window.labdb.charts.curves.data.datasets.find(d => d.runKey === arguments[0]);'
                        ' return d && d.data.length ? d.data[d.data.length - 1].x : null')
        first_step = wait_for('the live run on the chart', lambda: js(last_step_js, live_key), timeout=15)
        later_step = wait_for('a new point of the live run', lambda: (lambda s: s if s is not None and s > first_step
                                                                      else None)(js(last_step_js, live_key)), timeout=15)
        # The table follows too: its steps column reaches the step the chart had.
        steps_js = ('const c = document.querySelector(\'tr[data-run="\' + arguments[0] + \'"] td[data-column="steps"]\');'
                    ' return c ? Number(c.textContent) : null')
        steps = wait_for('the table to show step %d of the live run' % later_step,
                         lambda: (lambda n: n if n is not None and n >= later_step else None)(js(steps_js, live_key)),
                         timeout=15)
        print('live run: step %d, then %d on the chart; the table says %d steps' % (first_step, later_step, steps))
        no_alert()
        driver.save_screenshot(os.path.join(artifacts, 'labdb_serve_runs.png'))

        # ---- a run page ----
        driver.get(base_url + '/#/run/0/%d' % soft_1['id'])
        wait_for('the run page', lambda: driver.find_element(By.ID, 'run-name').text == soft_1['name'])
        params_text = driver.find_element(By.CSS_SELECTOR, 'table.params').text
        check('attention.type' in params_text and 'softmax' in params_text, 'the params table lacks attention.type')
        hashes = [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, 'td.hash')]
        check(hashes and all(re.fullmatch('[0-9a-f]{64}', h) for h in hashes), 'plugin sha256 cells: %r' % hashes)
        shown = get_json(base_url, '/api/runs/0/%d' % soft_1['id'])
        check(len(hashes) == len(shown['plugins']), 'the page lists %d plugins, the API %d' % (len(hashes),
                                                                                          len(shown['plugins'])))
        page_text = driver.find_element(By.ID, 'view').text
        for expected in (shown['run']['code_revision'], shown['run']['host'], 'Text samples', 'val/loss'):
            check(expected in page_text, 'the run page does not show %r' % expected)
        driver.save_screenshot(os.path.join(artifacts, 'labdb_serve_run.png'))
        for name in HOSTILE_NAMES:
            row = by_name[name][0]
            driver.get(base_url + '/#/run/0/%d' % row['id'])
            wait_for('the page of %r' % name, lambda: driver.find_element(By.ID, 'run-name').text == name)
            no_alert()

        # ---- the ablation view, against labdb ablate --json ----
        expected_groups = json.loads(run([labdb, '--db', db, 'ablate', '--experiment', 'copy', '--by', 'attention.type',
                                          '--metric', 'val/loss', '--json']))
        driver.get(base_url + '/#/ablate?db=0&experiment=copy&by=attention.type&metric=val/loss')
        rows_js = ("return [...document.querySelectorAll('#ablate-table tbody tr')]"
                   ".map(r => [...r.querySelectorAll('td')].map(c => c.textContent))")
        rows = wait_for('the ablation table', lambda: js(rows_js))
        check(len(rows) == len(expected_groups), 'the ablation shows %d groups, labdb ablate %d' % (len(rows),
                                                                                                   len(expected_groups)))
        for cells, group in zip(rows, expected_groups):
            check(cells[0] == group['group']['attention.type'] and cells[1] == str(group['n']),
                  'ablation row %r does not match %r' % (cells, group))
        # The result (and its baseline choice) is redrawn at every poll: choose inside the page.
        check(js("const s = document.getElementById('ablate-baseline'); if (!s) return false; s.value = 'softmax';"
                 " s.dispatchEvent(new Event('change')); return true"), 'no baseline choice')
        wait_for('the deltas', lambda: 'delta' in (text_of('#ablate-table') or '') and '(baseline)' in text_of('#ablate-table'))
        driver.save_screenshot(os.path.join(artifacts, 'labdb_serve_ablate.png'))

        # ---- the compare view ----
        driver.get(base_url + '/#/compare?run=0:%d&run=0:%d' % (soft_1['id'], linear_1['id']))
        wait_for('the compare table', lambda: 'attention.type' in (text_of('table.compare') or ''))
        driver.save_screenshot(os.path.join(artifacts, 'labdb_serve_compare.png'))
        no_alert()

        severe = [entry for entry in driver.get_log('browser') if entry.get('level') == 'SEVERE']
        check(not severe, 'the browser console has errors: %r' % severe)

        # ---- stopping ----
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=15)
        check(code == 0, 'labdb serve exited with %d after SIGTERM (stderr: %s)' % (code, server.stderr.read()))
        print('ok: runs table, curves (live), run page, ablation and compare views; screenshots in %s (%.0f s)' %
              (artifacts, time.monotonic() - started))
        return 0
    except Exception as failure:
        print('FAIL: %s: %s' % (type(failure).__name__, failure))
        if driver is not None:
            try:
                driver.save_screenshot(os.path.join(artifacts, 'failure.png'))
                print('page at failure: %s (screenshot failure.png)' % driver.current_url)
            except Exception:
                pass
        return 1
    finally:
        if driver is not None:
            driver.quit()
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
