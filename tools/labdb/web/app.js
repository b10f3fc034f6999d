// labdb serve's page: the runs table, live learning curves, run pages, the ablation and compare
// views, all from the JSON API of the server (GET /api/...; see docs/labdb-serve.md).
//
// Every value from a database reaches the page as text: the DOM is built with createElement and
// textContent (el() below), never with innerHTML, so a run named <script>...</script> shows as
// those characters. The server's Content-Security-Policy forbids inline script as a second line.
'use strict';

(function () {
  const POLL_MS = 2000;
  const STATUSES = ['running', 'finished', 'failed', 'interrupted', 'dead'];
  const PALETTE = ['#4e79a7', '#e15759', '#59a14f', '#f28e2b', '#b07aa1', '#76b7b2', '#edc948', '#ff9da7',
    '#9c755f', '#bab0ac'];

  const state = {
    databases: [],
    runs: [],                    // the last /api/runs rows (with db and params)
    filters: { status: '', experiment: '', sweep: '', db: '', where: '' },
    sort: { key: 'id', dir: 1 },
    selected: [],                // "db:id" of the runs on the chart, in the order selected
    metric: 'train/loss',
    logScale: false,
    smoothing: 0,
    groupBy: '',                 // a parameter: one mean line and band (mean +- std) per group of runs
    series: new Map(),           // "db:id|metric" -> { points: [{step, time, value}], lastStep }
    labels: new Map(),           // "db:id" -> legend label (/api/compare) among the runs of labelsKey
    labelsKey: null,             // the selection (keys joined by spaces) the labels were computed for
    polls: 0,                    // completed polls of the current view
  };
  const charts = {};
  // For tests and the curious: window.labdb.charts.curves is the Chart.js chart of the runs view.
  window.labdb = { state, charts, view: null };

  // ---- small helpers ----------------------------------------------------------------------

  // el('a', { href: '#/x', className: 'c' }, 'text', child): children are nodes or text.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'className') node.className = value;
      else if (name === 'text') node.textContent = value;
      else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  // Replaces the children of `node`; null children (an optional part that is absent) are skipped.
  function fill(node, ...children) {
    clear(node);
    for (const child of children) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  async function api(path, params) {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(params || {})) {
      for (const item of Array.isArray(value) ? value : [value]) {
        if (item !== undefined && item !== null && item !== '') search.append(name, item);
      }
    }
    const query = search.toString();
    const response = await fetch(path + (query ? '?' + query : ''), { cache: 'no-store' });
    const body = await response.json().catch(() => ({ error: 'the server answered ' + response.status }));
    if (!response.ok) throw new Error(body.error || ('HTTP ' + response.status));
    return body;
  }

  function showError(error) {
    const box = document.getElementById('error');
    if (!error) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    box.textContent = String(error.message || error);
  }

  function formatNumber(value) {
    if (value === null || value === undefined) return '-';
    if (Number.isInteger(value) && Math.abs(value) < 2 ** 53) return String(value);
    if (!Number.isFinite(value)) return String(value);
    return Number(value.toPrecision(5)).toString();
  }

  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined) return '-';
    if (seconds < 60) return seconds.toFixed(1) + 's';
    if (seconds < 3600) return Math.floor(seconds / 60) + 'm' + String(Math.floor(seconds % 60)).padStart(2, '0') + 's';
    return Math.floor(seconds / 3600) + 'h' + String(Math.floor((seconds % 3600) / 60)).padStart(2, '0') + 'm';
  }

  function shortTime(iso) {
    const match = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(iso || '');
    return match ? match[1] + ' ' + match[2] : (iso || '-');
  }

  function runKey(row) { return row.db + ':' + row.id; }

  function statusBadge(status) {
    const known = STATUSES.includes(status) ? status : 'other';
    return el('span', { className: 'status status-' + known, text: status });
  }

  function multipleDatabases() { return state.databases.length > 1; }

  function databaseName(index) {
    const database = state.databases[index];
    return database ? 'db ' + index + ': ' + database.file : 'db ' + index;
  }

  // The hash is the page's address: #/runs, #/run/DB/ID, #/ablate?..., #/compare?run=DB:ID&...
  function parseHash() {
    const hash = location.hash.replace(/^#/, '') || '/runs';
    const question = hash.indexOf('?');
    const path = question < 0 ? hash : hash.slice(0, question);
    const params = new URLSearchParams(question < 0 ? '' : hash.slice(question + 1));
    return { parts: path.split('/').filter((part) => part), params };
  }

  function setHash(path, params) {
    const query = params.toString();
    const hash = '#' + path + (query ? '?' + query : '');
    if (location.hash !== hash) location.hash = hash;
  }

  function table(headers, rows, options) {
    const head = el('tr', {}, ...headers.map((header) => el('th', typeof header === 'string' ? { text: header } : header)));
    const body = el('tbody', {}, ...rows);
    return el('table', { className: (options && options.className) || 'grid' }, el('thead', {}, head), body);
  }

  function keyValueTable(pairs, className) {
    return el('table', { className: className || 'kv' },
      el('tbody', {}, ...pairs.map(([key, value]) => el('tr', {}, el('th', { text: key }),
        el('td', {}, value instanceof Node ? value : String(value === null || value === undefined ? '-' : value))))));
  }

  function section(title, ...content) {
    return el('section', { className: 'panel' }, el('h2', { text: title }), ...content);
  }

  function select(id, options, value, onchange) {
    const node = el('select', { id, onchange: (event) => onchange(event.target.value) },
      ...options.map(([optionValue, label]) => el('option', { value: optionValue, text: label })));
    node.value = value;
    return node;
  }

  // ---- polling -----------------------------------------------------------------------------

  let pollTimer = null;
  let polling = false;

  async function poll() {
    if (polling || !window.labdb.view || !window.labdb.view.refresh) return;
    polling = true;
    try {
      await window.labdb.view.refresh();
      state.polls += 1;
      showError(null);
      document.getElementById('live').textContent = 'live \u00b7 updated ' + new Date().toLocaleTimeString();
    } catch (error) {
      showError(error);
      document.getElementById('live').textContent = 'not updated: ' + (error.message || error);
    } finally {
      polling = false;
    }
  }

  function startPolling() {
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = setInterval(poll, POLL_MS);
  }

  // ---- the runs view: table + curves --------------------------------------------------------

  function runColumns(rows) {
    const columns = [];
    if (multipleDatabases()) columns.push({ key: 'db', label: 'db', get: (row) => row.db, numeric: true });
    columns.push(
      { key: 'id', label: 'id', get: (row) => row.id, numeric: true },
      { key: 'uid', label: 'uid', get: (row) => row.uid.slice(0, 8) },
      { key: 'name', label: 'name', get: (row) => row.name,
        cell: (row) => el('a', { href: '#/run/' + row.db + '/' + row.id, className: 'run-name', text: row.name }) },
      { key: 'experiment', label: 'experiment', get: (row) => row.experiment },
      { key: 'status', label: 'status', get: (row) => row.status, cell: (row) => statusBadge(row.status) },
      { key: 'started_at', label: 'started', get: (row) => row.started_at, show: (row) => shortTime(row.started_at) },
      { key: 'wall_s', label: 'wall', get: (row) => row.wall_s, numeric: true, show: (row) => formatDuration(row.wall_s) },
      { key: 'steps', label: 'steps', get: (row) => row.steps, numeric: true },
      { key: 'last_val_loss', label: 'last val/loss', get: (row) => row.last_val_loss, numeric: true },
      { key: 'best_val_loss', label: 'best val/loss', get: (row) => row.best_val_loss, numeric: true },
      { key: 'sweep', label: 'sweep', get: (row) => row.sweep },
      { key: 'swept', label: 'swept', get: (row) => row.swept });
    // The parameters whose values differ among the listed runs: the rest would repeat one value.
    const keys = new Set();
    for (const row of rows) for (const key of Object.keys(row.params)) keys.add(key);
    for (const key of [...keys].sort()) {
      const values = new Set(rows.map((row) => (key in row.params ? row.params[key] : '\u0000unset')));
      if (values.size < 2) continue;
      const numeric = rows.every((row) => !(key in row.params) || row.params[key] === '' || !isNaN(Number(row.params[key])));
      columns.push({ key: 'param:' + key, label: key, param: true, numeric,
        get: (row) => (key in row.params ? (numeric ? Number(row.params[key]) : row.params[key]) : null),
        show: (row) => (key in row.params ? row.params[key] : '-') });
    }
    return columns;
  }

  function compareValues(a, b, numeric) {
    if (a === null || a === undefined) return b === null || b === undefined ? 0 : 1;  // missing last
    if (b === null || b === undefined) return -1;
    if (numeric) return a - b;
    return String(a).localeCompare(String(b), undefined, { numeric: true });
  }

  function renderRunsTable(container) {
    const rows = state.runs.slice();
    const columns = runColumns(rows);
    const sortColumn = columns.find((column) => column.key === state.sort.key) || columns.find((c) => c.key === 'id');
    rows.sort((a, b) => state.sort.dir * compareValues(sortColumn.get(a), sortColumn.get(b), sortColumn.numeric) ||
      (a.db - b.db) || (a.id - b.id));
    const headers = [{ text: '' }].concat(columns.map((column) => {
      const arrow = column.key === state.sort.key ? (state.sort.dir > 0 ? ' \u25b2' : ' \u25bc') : '';
      return {
        text: column.label + arrow,
        className: (column.numeric ? 'num ' : '') + (column.param ? 'param ' : '') + 'sortable',
        title: 'sort by ' + column.label,
        'data-sort': column.key,
        onclick: () => {
          state.sort = { key: column.key, dir: state.sort.key === column.key ? -state.sort.dir : 1 };
          renderRunsTable(container);
        },
      };
    }));
    const body = rows.map((row) => {
      const key = runKey(row);
      const checkbox = el('input', { type: 'checkbox', className: 'select-run', 'data-run': key,
        title: 'plot this run', onchange: (event) => toggleRun(key, event.target.checked) });
      checkbox.checked = state.selected.includes(key);
      const cells = columns.map((column) => {
        const value = column.cell ? column.cell(row) : (column.show ? column.show(row)
          : (column.numeric ? formatNumber(column.get(row)) : (column.get(row) ?? '-')));
        return el('td', { className: (column.numeric ? 'num' : '') + (column.param ? ' param' : ''),
          'data-column': column.key }, value);
      });
      return el('tr', { 'data-run': key, className: state.selected.includes(key) ? 'selected' : '' },
        el('td', {}, checkbox), ...cells);
    });
    const grid = table(headers, body, { className: 'grid runs' });
    grid.id = 'runs-table';
    fill(container, grid);
    if (rows.length === 0) container.append(el('p', { className: 'empty', text: 'No runs match the filters.' }));
    document.getElementById('run-count').textContent = rows.length + (rows.length === 1 ? ' run' : ' runs');
  }

  function toggleRun(key, on) {
    const index = state.selected.indexOf(key);
    if (on && index < 0) state.selected.push(key);
    if (!on && index >= 0) state.selected.splice(index, 1);
    for (const row of document.querySelectorAll('#runs-table tr[data-run]')) {
      row.classList.toggle('selected', state.selected.includes(row.getAttribute('data-run')));
    }
    refreshCurves(true).catch(showError);
  }

  function whereList(text) {
    return text.split(',').map((part) => part.trim()).filter((part) => part);
  }

  async function fetchRuns() {
    const filters = state.filters;
    state.runs = await api('/api/runs', { status: filters.status, experiment: filters.experiment,
      sweep: filters.sweep, db: filters.db, where: whereList(filters.where) });
  }

  // EMA as TensorBoard smooths: debiased, so the first points are not pulled towards zero.
  function smooth(points, weight) {
    if (!weight) return points.map((point) => ({ x: point.step, y: point.value }));
    let average = 0;
    let count = 0;
    return points.map((point) => {
      average = average * weight + (1 - weight) * point.value;
      count += 1;
      return { x: point.step, y: average / (1 - weight ** count) };
    });
  }

  function ensureChart(canvas) {
    if (charts.curves && charts.curves.canvas === canvas) return charts.curves;
    if (charts.curves) charts.curves.destroy();
    charts.curves = new Chart(canvas.getContext('2d'), {
      type: 'line',
      data: { datasets: [] },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: 'nearest', intersect: false },
        elements: { point: { radius: 0, hitRadius: 6 }, line: { borderWidth: 1.75 } },
        scales: {
          x: { type: 'linear', title: { display: true, text: 'step' } },
          y: { type: 'linear', title: { display: true, text: state.metric } },
        },
        plugins: { legend: { position: 'bottom', labels: { boxWidth: 14,
          filter: (item, data) => !data.datasets[item.datasetIndex].isBand } } },
      },
    });
    return charts.curves;
  }

  // A run's legend label depends on which other runs are drawn beside it, so the labels are kept
  // with the selection they were computed for and computed again when it differs.
  async function labelsFor(selected) {
    const selectionKey = selected.join(' ');
    if (state.labelsKey === selectionKey) return state.labels;
    const labels = new Map();
    if (selected.length) {
      for (const row of await api('/api/compare', { run: selected })) {
        const prefix = multipleDatabases() ? 'db' + row.db + ' ' : '';
        labels.set(runKey(row), prefix + (row.label || row.name));
      }
    }
    state.labels = labels;
    state.labelsKey = selectionKey;
    return labels;
  }

  // One update of the chart at a time, in the order asked: a tick and a poll that overlapped would
  // otherwise append the same new points twice or draw stale legend labels.
  let curvesQueue = Promise.resolve();
  function refreshCurves(selectionChanged) {
    const next = curvesQueue.then(() => updateCurves(selectionChanged));
    curvesQueue = next.catch(() => {});
    return next;
  }

  // The parameters whose values differ among the selected runs: what the curves can be grouped by.
  function groupKeys() {
    const rows = state.selected.map((key) => state.runs.find((row) => runKey(row) === key)).filter(Boolean);
    const keys = new Set();
    for (const row of rows) for (const key of Object.keys(row.params)) keys.add(key);
    return [...keys].filter((key) => new Set(rows.map((row) => row.params[key])).size > 1).sort();
  }

  function refreshGroupOptions() {
    const groupSelect = document.getElementById('group-by');
    if (!groupSelect) return;
    const keys = groupKeys();
    if (state.groupBy && !keys.includes(state.groupBy)) keys.push(state.groupBy);
    fill(groupSelect, ...[['', 'none (one line per run)']].concat(keys.map((key) => [key, key]))
      .map(([value, text]) => el('option', { value, text })));
    groupSelect.value = state.groupBy;
  }

  // One mean line per group of the selected runs, with a band of mean +- the sample standard
  // deviation, exactly as `labdb curves --by KEY` draws them (GET /api/curves).
  async function groupedDatasets(selected) {
    const dbs = [...new Set(selected.map((key) => key.split(':')[0]))];
    const hint = document.getElementById('group-hint');
    if (hint) hint.textContent = dbs.length > 1 ? 'grouping needs runs of one database' : '';
    if (dbs.length !== 1) return null;
    const reply = await api('/api/curves', { db: dbs[0], run: selected.map((key) => key.split(':')[1]),
      metric: state.metric, by: state.groupBy, band: 'std' });
    const datasets = [];
    reply.series.forEach((series, index) => {
      const color = PALETTE[index % PALETTE.length];
      const points = (field) => smooth(series.points.filter((p) => p[field] !== null && p[field] !== undefined)
        .map((p) => ({ step: p.x, value: p[field] })), state.smoothing);
      const band = { isBand: true, label: '', borderWidth: 0, pointRadius: 0, showLine: true,
        backgroundColor: color + '33', borderColor: color + '00' };
      datasets.push(Object.assign({}, band, { data: points('band_hi'), fill: '+1' }));
      datasets.push(Object.assign({}, band, { data: points('band_lo'), fill: false }));
      datasets.push({ label: series.label, groupKey: JSON.stringify(series.group), runs: series.runs,
        rawPoints: series.points, data: points('y'), borderColor: color, backgroundColor: color, showLine: true });
    });
    return datasets;
  }

  // Fetches what is new of each selected run's metric (after_step) and redraws the chart. It works
  // on the selection as it was when it started: a click while it waits on the server queues the
  // next update instead of mixing two selections in one drawing.
  async function updateCurves(selectionChanged) {
    const canvas = document.getElementById('curves');
    if (!canvas) return;
    const chart = ensureChart(canvas);
    const selected = [...state.selected];
    const labels = await labelsFor(selected);
    if (selectionChanged) refreshGroupOptions();
    const grouped = state.groupBy && selected.length ? await groupedDatasets(selected) : null;
    if (grouped) {
      chart.data.datasets = grouped;
      chart.options.scales.y.type = state.logScale ? 'logarithmic' : 'linear';
      chart.options.scales.y.title.text = state.metric + ' (mean \u00b1 std by ' + state.groupBy + ')' +
        (state.smoothing ? ' (EMA ' + state.smoothing + ')' : '');
      chart.update('none');
      const hint = document.getElementById('curves-hint');
      if (hint) hint.hidden = true;
      return;
    }
    await Promise.all(selected.map(async (key) => {
      const [db, run] = key.split(':');
      const seriesKey = key + '|' + state.metric;
      const known = state.series.get(seriesKey);
      const reply = await api('/api/metrics', { db, run, name: state.metric,
        after_step: known && known.points.length ? known.lastStep : undefined });
      const series = known || { points: [], lastStep: null };
      for (const point of reply.points) series.points.push(point);
      if (series.points.length) series.lastStep = series.points[series.points.length - 1].step;
      state.series.set(seriesKey, series);
    }));
    chart.data.datasets = selected.map((key, index) => {
      const series = state.series.get(key + '|' + state.metric) || { points: [] };
      const run = state.runs.find((row) => runKey(row) === key);
      const color = PALETTE[index % PALETTE.length];
      return {
        label: labels.get(key) || (run ? run.name : key),
        runKey: key,
        rawPoints: series.points,
        data: smooth(series.points, state.smoothing),
        borderColor: color,
        backgroundColor: color,
        showLine: true,
      };
    });
    chart.options.scales.y.type = state.logScale ? 'logarithmic' : 'linear';
    chart.options.scales.y.title.text = state.metric + (state.smoothing ? ' (EMA ' + state.smoothing + ')' : '');
    chart.update('none');
    const hint = document.getElementById('curves-hint');
    if (hint) hint.hidden = selected.length > 0;
  }

  async function renderRunsView(root) {
    const filters = state.filters;
    const databases = state.databases;
    const experiments = [...new Set(databases.flatMap((database) => database.experiments))].sort();
    const sweeps = [...new Set(databases.flatMap((database) => database.sweeps))].sort();
    const refilter = () => fetchRuns().then(() => renderRunsTable(tableHolder)).catch(showError);
    const whereInput = el('input', { id: 'filter-where', type: 'text', placeholder: 'key=value, key2=value2',
      value: filters.where, title: 'only runs whose parameters have these values',
      onchange: (event) => { filters.where = event.target.value; refilter(); } });
    const filterBar = el('div', { className: 'toolbar' },
      el('label', {}, 'status ', select('filter-status', [['', 'any']].concat(STATUSES.map((s) => [s, s])),
        filters.status, (value) => { filters.status = value; refilter(); })),
      el('label', {}, 'experiment ', select('filter-experiment', [['', 'any']].concat(experiments.map((e) => [e, e])),
        filters.experiment, (value) => { filters.experiment = value; refilter(); })),
      el('label', {}, 'sweep ', select('filter-sweep', [['', 'any']].concat(sweeps.map((s) => [s, s])),
        filters.sweep, (value) => { filters.sweep = value; refilter(); })),
      multipleDatabases() ? el('label', {}, 'database ', select('filter-db',
        [['', 'all']].concat(databases.map((d) => [String(d.index), databaseName(d.index)])),
        filters.db, (value) => { filters.db = value; refilter(); })) : null,
      el('label', {}, 'params ', whereInput),
      el('span', { id: 'run-count', className: 'muted' }),
      el('span', { className: 'spacer' }),
      el('button', { id: 'compare-selected', onclick: () => {
        const params = new URLSearchParams();
        for (const key of state.selected) params.append('run', key);
        setHash('/compare', params);
      } }, 'Compare selected'),
      el('button', { id: 'clear-selection', onclick: () => {
        state.selected = [];
        for (const box of document.querySelectorAll('input.select-run')) box.checked = false;
        toggleRun('', false);
      } }, 'Clear selection'));
    const tableHolder = el('div', { className: 'table-scroll', id: 'runs-holder' });

    const metricSelect = select('metric', [[state.metric, state.metric]], state.metric, (value) => {
      state.metric = value;
      refreshCurves(false).catch(showError);
    });
    const smoothingValue = el('span', { id: 'smoothing-value', text: String(state.smoothing) });
    const smoothingInput = el('input', { id: 'smoothing', type: 'range', min: 0, max: 0.99, step: 0.01,
      value: state.smoothing, title: 'exponential moving average weight (0: raw values)',
      oninput: (event) => {
        state.smoothing = Number(event.target.value);
        smoothingValue.textContent = String(state.smoothing);
        refreshCurves(false).catch(showError);
      } });
    const logInput = el('input', { id: 'log-scale', type: 'checkbox', onchange: (event) => {
      state.logScale = event.target.checked;
      refreshCurves(false).catch(showError);
    } });
    logInput.checked = state.logScale;
    const groupSelect = select('group-by', [['', 'none (one line per run)']], state.groupBy, (value) => {
      state.groupBy = value;
      refreshCurves(false).catch(showError);
    });
    const chartPanel = el('section', { className: 'panel chart-panel' },
      el('div', { className: 'toolbar' },
        el('h2', { text: 'Learning curves' }),
        el('label', {}, 'metric ', metricSelect),
        el('label', {}, 'group by ', groupSelect),
        el('span', { id: 'group-hint', className: 'muted' }),
        el('label', {}, logInput, ' log scale'),
        el('label', {}, 'smoothing ', smoothingInput, ' ', smoothingValue)),
      el('p', { id: 'curves-hint', className: 'muted', text: 'Tick runs in the table to plot them.' }),
      el('div', { className: 'chart-box' }, el('canvas', { id: 'curves' })));

    fill(root, el('section', { className: 'panel' }, filterBar, tableHolder), chartPanel);
    await fetchRuns();
    renderRunsTable(tableHolder);
    const names = await api('/api/metric_names');
    if (!names.includes(state.metric) && names.length) state.metric = names.includes('val/loss') ? 'val/loss' : names[0];
    fill(metricSelect, ...names.map((name) => el('option', { value: name, text: name })));
    metricSelect.value = state.metric;
    await refreshCurves(true);
    return {
      refresh: async () => {
        await fetchRuns();
        // The table is rebuilt; a run's checkbox that had the focus gets it back.
        const focused = document.activeElement;
        const focusedRun = tableHolder.contains(focused) ? focused.getAttribute('data-run') : null;
        renderRunsTable(tableHolder);
        if (focusedRun) {
          const box = tableHolder.querySelector('input.select-run[data-run="' + CSS.escape(focusedRun) + '"]');
          if (box) box.focus();
        }
        await refreshCurves(false);
      },
    };
  }

  // ---- a run's page -------------------------------------------------------------------------

  const PROVENANCE = ['uid', 'experiment', 'status', 'backend', 'device', 'precision', 'seed', 'threads', 'world_size',
    'communicator', 'host', 'pid', 'code_revision', 'config_hash', 'sweep', 'started_at', 'ended_at', 'heartbeat_at',
    'wall_s'];
  const NOT_PROVENANCE = new Set(['id', 'name', 'config', 'error', 'libraries']);

  function renderRunPage(root, shown) {
    const run = shown.run;
    const key = shown.db + ':' + run.id;
    const provenance = PROVENANCE.filter((column) => column in run)
      .concat(Object.keys(run).filter((column) => !PROVENANCE.includes(column) && !NOT_PROVENANCE.has(column)))
      .map((column) => [column, column === 'status' ? statusBadge(run.status)
        : column === 'wall_s' && run.wall_s !== null ? formatDuration(run.wall_s) : run[column]]);
    provenance.push(['database', databaseName(shown.db)]);
    let libraries = [];
    try {
      libraries = Object.entries(JSON.parse(run.libraries || '{}'));
    } catch (error) {
      libraries = [['(unreadable)', String(run.libraries)]];
    }
    const plotButton = el('button', { id: 'plot-run', onclick: () => {
      if (!state.selected.includes(key)) state.selected.push(key);
      location.hash = '#/runs';
    } }, 'Plot on the runs page');
    const metrics = table(['name', 'rows', 'last', 'at step', 'best', 'at step'].map((text, i) =>
      ({ text, className: i > 0 ? 'num' : '' })),
    shown.metrics.map((metric) => el('tr', {},
      el('td', { text: metric.name + (metric.goal === 'max' ? ' (max)' : metric.goal === 'min' ? ' (min)' : '') }),
      el('td', { className: 'num', text: formatNumber(metric.count) }),
      el('td', { className: 'num', text: metric.last === null ? 'nan' : formatNumber(metric.last) }),
      el('td', { className: 'num', text: formatNumber(metric.last_step) }),
      el('td', { className: 'num', text: formatNumber(metric.best) }),
      el('td', { className: 'num', text: formatNumber(metric.best_step) }))));
    const plugins = table(['kind', 'name', 'version', 'file', 'sha256', 'abi'],
      shown.plugins.map((plugin) => el('tr', {},
        el('td', { text: plugin.kind }), el('td', { text: plugin.name }), el('td', { text: plugin.version }),
        el('td', { className: 'path', text: plugin.file }), el('td', { className: 'hash', text: plugin.sha256 }),
        el('td', { text: plugin.abi === null ? '-' : plugin.abi }))));
    const params = Object.entries(shown.params);
    fill(root, 
      el('div', { className: 'run-title' },
        el('h1', { id: 'run-name', text: run.name }),
        statusBadge(run.status),
        el('span', { className: 'muted', text: 'run ' + run.id + ' \u00b7 ' + databaseName(shown.db) }),
        el('span', { className: 'spacer' }), plotButton),
      run.error ? el('div', { className: 'run-error', id: 'run-error' }, el('strong', { text: 'error: ' }), run.error) : null,
      el('div', { className: 'columns' },
        el('div', {},
          section('Provenance', keyValueTable(provenance)),
          section('Libraries', libraries.length ? keyValueTable(libraries) : el('p', { className: 'muted', text: '(none recorded)' }))),
        el('div', {},
          section('Metrics', shown.metrics.length ? metrics : el('p', { className: 'muted', text: '(none)' })),
          section('Parameters', params.length ? keyValueTable(params, 'kv params') : el('p', { className: 'muted', text: '(none)' })))),
      section('Plugins', shown.plugins.length ? plugins : el('p', { className: 'muted', text: '(none)' })),
      section('Text samples (the last of each name)', ...(shown.texts.length ? shown.texts.map((text) =>
        el('div', { className: 'sample' }, el('h3', { text: text.name + ' at step ' + text.step }),
          el('pre', { text: text.text }))) : [el('p', { className: 'muted', text: '(none)' })])),
      section('Artifacts', shown.artifacts.length ? keyValueTable(shown.artifacts.map((a) => [a.kind, a.path]))
        : el('p', { className: 'muted', text: '(none)' })),
      section('Resolved configuration', el('pre', { className: 'config', text: run.config || '' })));
  }

  async function renderRunView(root, db, id) {
    const load = async () => {
      const shown = await api('/api/runs/' + encodeURIComponent(db) + '/' + encodeURIComponent(id));
      const scroll = window.scrollY;
      renderRunPage(root, shown);
      window.scrollTo(0, scroll);
      return shown;
    };
    let shown = await load();
    return {
      // Only a run still being written changes.
      refresh: async () => {
        if (shown.run.status === 'running') shown = await load();
      },
    };
  }

  // ---- the ablation view --------------------------------------------------------------------

  async function renderAblateView(root, params) {
    const databases = state.databases;
    const db = params.get('db') || '0';
    const database = databases[Number(db)] || { experiments: [], sweeps: [] };
    let scope = params.get('experiment') !== null ? 'experiment:' + params.get('experiment')
      : params.get('sweep') !== null ? 'sweep:' + params.get('sweep')
        : (database.experiments.length ? 'experiment:' + database.experiments[0] : '');
    const by = params.getAll('by');
    const metric = params.get('metric') || 'val/loss';
    const best = params.get('best') === '1';
    const baseline = params.get('baseline') || '';
    const update = (changes) => {
      const next = new URLSearchParams();
      const values = Object.assign({ db, scope, by, metric, best: best ? '1' : '', baseline }, changes);
      next.set('db', values.db);
      const colon = values.scope.indexOf(':');
      if (colon > 0) next.set(values.scope.slice(0, colon), values.scope.slice(colon + 1));
      for (const key of values.by) next.append('by', key);
      next.set('metric', values.metric);
      if (values.best) next.set('best', '1');
      if (values.baseline) next.set('baseline', values.baseline);
      setHash('/ablate', next);
    };

    const scopeOptions = database.experiments.map((e) => ['experiment:' + e, 'experiment ' + e])
      .concat(database.sweeps.map((s) => ['sweep:' + s, 'sweep ' + s]));
    const colon = scope.indexOf(':');
    const scopeFilter = colon > 0 ? { [scope.slice(0, colon)]: scope.slice(colon + 1) } : {};
    const [finished, names] = await Promise.all([
      api('/api/runs', Object.assign({ db, status: 'finished' }, scopeFilter)),
      api('/api/metric_names', { db }),
    ]);
    // The keys worth grouping by: those whose values differ among the finished runs in scope.
    const candidates = new Set();
    const allKeys = new Set();
    for (const run of finished) for (const key of Object.keys(run.params)) allKeys.add(key);
    for (const key of allKeys) {
      if (new Set(finished.map((run) => run.params[key])).size > 1) candidates.add(key);
    }
    for (const key of by) candidates.add(key);
    const byBoxes = [...candidates].sort().map((key) => {
      const box = el('input', { type: 'checkbox', 'data-key': key, onchange: (event) => {
        update({ by: event.target.checked ? by.concat([key]) : by.filter((k) => k !== key), baseline: '' });
      } });
      box.checked = by.includes(key);
      return el('label', { className: 'chip' }, box, ' ' + key);
    });
    const controls = el('div', { className: 'toolbar wrap' },
      databases.length > 1 ? el('label', {}, 'database ', select('ablate-db',
        databases.map((d) => [String(d.index), databaseName(d.index)]), db,
        (value) => update({ db: value, scope: '', by: [], baseline: '' }))) : null,
      el('label', {}, 'runs of ', select('ablate-scope', scopeOptions, scope,
        (value) => update({ scope: value, by: [], baseline: '' }))),
      el('label', {}, 'metric ', select('ablate-metric', names.map((n) => [n, n]), metric,
        (value) => update({ metric: value }))),
      el('label', {}, 'value ', select('ablate-value', [['', 'last'], ['1', 'best']], best ? '1' : '',
        (value) => update({ best: value }))),
      el('span', { className: 'muted', text: finished.length + ' finished runs' }));
    const byRow = el('div', { className: 'toolbar wrap' }, el('span', { text: 'group by ' }),
      ...(byBoxes.length ? byBoxes : [el('span', { className: 'muted', text: '(no parameter differs among these runs)' })]));
    const result = el('div', { id: 'ablate-result' });
    fill(root, section('Ablation', controls, byRow, result));

    if (by.length === 0 || !scope) {
      result.append(el('p', { className: 'muted', text: 'Choose the parameters to group by.' }));
      return { refresh: null };
    }
    const request = Object.assign({ db, by, metric, best: best ? '1' : '', baseline }, scopeFilter);
    const render = (reply) => {
      const groups = reply.groups;
      const hasBaseline = groups.length > 0 && 'baseline' in groups[0];
      const costs = groups.length ? Object.keys(groups[0].cost || {}) : [];
      const groupName = (group) => by.map((key) => (group.group[key] === null ? '-' : group.group[key])).join(',');
      const baselineSelect = select('ablate-baseline', [['', '(none)']].concat(groups.map((g) => [groupName(g), groupName(g)])),
        baseline, (value) => update({ baseline: value }));
      const headers = by.map((key) => ({ text: key }))
        .concat(['n', 'mean \u00b1 std', 'min', 'max'].map((text) => ({ text, className: 'num' })))
        .concat(hasBaseline ? [{ text: 'delta', className: 'num' }, { text: '95% CI', className: 'num' }, { text: 'method' }] : [])
        .concat(costs.map((cost) => ({ text: cost, className: 'num' })))
        .concat([{ text: 'best' }, { text: 'runs' }]);
      const rows = groups.map((group) => el('tr', { className: (group.best ? 'best ' : '') + (group.baseline ? 'baseline' : '') },
        ...by.map((key) => el('td', { text: group.group[key] === null ? '-' : group.group[key] })),
        el('td', { className: 'num', text: String(group.n) }),
        el('td', { className: 'num', text: formatNumber(group.mean) + (group.std === null ? '' : ' \u00b1 ' + formatNumber(group.std)) }),
        el('td', { className: 'num', text: formatNumber(group.min) }),
        el('td', { className: 'num', text: formatNumber(group.max) }),
        ...(hasBaseline ? (group.baseline ? [el('td', { className: 'muted', text: '(baseline)' }), el('td'), el('td')] : [
          el('td', { className: 'num', text: formatNumber(group.delta) }),
          el('td', { className: 'num', text: group.ci_low === null ? '-' : '[' + formatNumber(group.ci_low) + ', ' + formatNumber(group.ci_high) + ']' }),
          el('td', { text: group.ci_method || '' })]) : []),
        ...costs.map((cost) => el('td', { className: 'num', text: formatNumber(group.cost[cost]) })),
        el('td', { className: 'best-mark', text: group.best ? '\u2605' : '' }),
        el('td', {}, ...group.runs.map((id, i) => [i ? ', ' : '', el('a', { href: '#/run/' + reply.db + '/' + id, text: String(id) })]).flat())));
      fill(result, 
        el('div', { className: 'toolbar' }, el('label', {}, 'baseline ', baselineSelect),
          el('span', { className: 'muted', text: reply.metric + ' (' + reply.value + ' value per run, ' +
            (reply.goal === 'max' ? 'higher is better' : reply.goal === 'min' ? 'lower is better' : 'no declared goal, so no best group') + ')' +
            (reply.left_out ? '; ' + reply.left_out + ' run(s) without a finite value left out' : '') })),
        table(headers, rows, { className: 'grid ablate' }));
      result.querySelector('table').id = 'ablate-table';
    };
    render(await api('/api/ablate', request));
    return { refresh: async () => render(await api('/api/ablate', request)) };
  }

  // ---- the compare view ---------------------------------------------------------------------

  async function renderCompareView(root, params) {
    const runs = params.getAll('run');
    const all = params.get('all') === '1';
    if (runs.length === 0) {
      fill(root, section('Compare', el('p', { className: 'muted',
        text: 'Tick runs on the runs page, then press "Compare selected".' })));
      return { refresh: null };
    }
    const render = (rows) => {
      const allBox = el('input', { type: 'checkbox', id: 'compare-all', onchange: (event) => {
        const next = new URLSearchParams(params);
        if (event.target.checked) next.set('all', '1'); else next.delete('all');
        setHash('/compare', next);
      } });
      allBox.checked = all;
      const headers = [{ text: '' }].concat(rows.map((row) =>
        ({ text: (multipleDatabases() ? 'db' + row.db + ' ' : '') + row.id + ' ' + row.name })));
      const keys = rows.length ? Object.keys(rows[0].params) : [];
      const metricNames = [...new Set(rows.flatMap((row) => Object.keys(row.metrics)))].sort();
      const body = [el('tr', { className: 'group' }, el('th', { text: all ? 'params' : 'params (differing)', colspan: rows.length + 1 }))]
        .concat(keys.map((key) => el('tr', {}, el('th', { text: key }),
          ...rows.map((row) => el('td', { text: row.params[key] === null ? '-' : row.params[key] })))))
        .concat([el('tr', { className: 'group' }, el('th', { text: 'status', colspan: 1 }), ...rows.map((row) => el('td', {}, statusBadge(row.status))))])
        .concat([el('tr', { className: 'group' }, el('th', { text: 'metrics (last / best)', colspan: rows.length + 1 }))])
        .concat(metricNames.map((name) => el('tr', {}, el('th', { text: name }), ...rows.map((row) => {
          const metric = row.metrics[name];
          return el('td', { className: 'num', text: metric ? formatNumber(metric.last) + ' @' + metric.last_step +
            ' / ' + formatNumber(metric.best) + (metric.best === null ? '' : ' @' + metric.best_step) : '-' });
        }))));
      fill(root, section('Compare', el('div', { className: 'toolbar' },
        el('label', {}, allBox, ' show every parameter')), el('div', { className: 'table-scroll' },
        table(headers, body, { className: 'grid compare' }))));
    };
    render(await api('/api/compare', { run: runs, all: all ? '1' : '' }));
    return { refresh: async () => render(await api('/api/compare', { run: runs, all: all ? '1' : '' })) };
  }

  // ---- routing ------------------------------------------------------------------------------

  async function route() {
    const { parts, params } = parseHash();
    const root = document.getElementById('view');
    const name = parts[0] || 'runs';
    for (const link of document.querySelectorAll('header nav a')) {
      link.classList.toggle('active', link.id === 'nav-' + (name === 'run' ? 'runs' : name));
    }
    if (name !== 'runs' && charts.curves) {
      charts.curves.destroy();
      delete charts.curves;
    }
    window.labdb.view = null;
    state.polls = 0;
    try {
      let view;
      if (name === 'run' && parts.length === 3) view = await renderRunView(root, parts[1], parts[2]);
      else if (name === 'ablate') view = await renderAblateView(root, params);
      else if (name === 'compare') view = await renderCompareView(root, params);
      else view = await renderRunsView(root);
      window.labdb.view = Object.assign({ name }, view);
      showError(null);
    } catch (error) {
      window.labdb.view = { name, refresh: null, error: String(error.message || error) };
      showError(error);
    }
  }

  async function start() {
    try {
      state.databases = await api('/api/databases');
    } catch (error) {
      showError(error);
    }
    const list = document.getElementById('databases');
    list.textContent = state.databases.map((database) => (multipleDatabases() ? database.index + ': ' : '') +
      database.file).join(' \u00b7 ');
    window.addEventListener('hashchange', route);
    await route();
    startPolling();
  }

  start();
})();
