/* The staff dashboard: fetches data.json (same origin, the admin's session) and draws it with the
   vendored Apache ECharts. `window.mcDashboard` exposes the charts and the last load's outcome, which
   the browser check (tests/monitoring/test_browser.py, make screenshots) reads. */
(function () {
  "use strict";

  var root = document.getElementById("mc-dashboard");
  var state = { charts: {}, loaded: false, error: null, data: null, loads: 0 };
  window.mcDashboard = state;
  var REFRESH_MS = 30000;
  var range = root.dataset.range;

  function chart(id) {
    if (!state.charts[id]) {
      state.charts[id] = echarts.init(document.getElementById(id), null, { renderer: "canvas" });
    }
    return state.charts[id];
  }

  function percent(value) {
    return value === null || value === undefined ? "—" : (value * 100).toFixed(1) + " %";
  }

  function milliseconds(value) {
    return value >= 1000 ? (value / 1000).toFixed(1) + " s" : Math.round(value) + " ms";
  }

  function empty(id, text) {
    chart(id).setOption(
      { title: { text: text, left: "center", top: "middle", textStyle: { color: "#999", fontSize: 13 } }, series: [] },
      true
    );
  }

  // Lines over time, one per name: {name: [[epoch ms, value], …]}.
  function lines(id, byName, format, yMax) {
    var names = Object.keys(byName);
    if (!names.length) {
      return empty(id, "No data in this range");
    }
    chart(id).setOption(
      {
        animation: false,
        tooltip: { trigger: "axis", valueFormatter: format },
        legend: { type: "scroll", top: 0 },
        grid: { left: 60, right: 20, top: 36, bottom: 30 },
        xAxis: { type: "time", min: Date.parse(state.data.since), max: Date.parse(state.data.until) },
        yAxis: { type: "value", max: yMax, axisLabel: { formatter: format } },
        series: names.map(function (name) {
          return { name: name, type: "line", showSymbol: byName[name].length < 3, data: byName[name] };
        }),
      },
      true
    );
  }

  function bars(id, labels, series, options) {
    if (!labels.length) {
      return empty(id, (options && options.emptyText) || "Nothing to show");
    }
    chart(id).setOption(
      Object.assign(
        {
          animation: false,
          tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
          legend: { top: 0 },
          grid: { left: 150, right: 40, top: 36, bottom: 30 },
          yAxis: { type: "category", data: labels, inverse: true },
          xAxis: { type: "value" },
          series: series,
        },
        options && options.extra
      ),
      true
    );
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) {
      td.className = className;
    }
    row.appendChild(td);
  }

  function table(id, rows, columns) {
    var body = document.querySelector("#" + id + " tbody");
    body.replaceChildren();
    rows.forEach(function (item) {
      var row = document.createElement("tr");
      columns.forEach(function (column) {
        var value = column(item);
        cell(row, Array.isArray(value) ? value[0] : value, Array.isArray(value) ? value[1] : "");
      });
      body.appendChild(row);
    });
  }

  function draw(data) {
    lines("chart-volume-channel", data.volume.by_channel, String);
    lines("chart-volume-lane", data.volume.by_lane, String);
    lines("chart-success-rate", data.quality.success_rate, percent, 1);
    lines("chart-call-latency", data.quality.call_p95_ms, milliseconds);
    lines("chart-delivery-rate", data.quality.delivery_rate, percent, 1);
    lines("chart-receipt-latency", data.quality.receipt_p95_ms, milliseconds);

    bars(
      "chart-errors",
      data.errors.map(function (e) { return e.provider + " · " + e.outcome + (e.code ? " (" + e.code + ")" : ""); }),
      [{ name: "failed calls", type: "bar", data: data.errors.map(function (e) { return e.calls; }) }],
      { emptyText: "No failed calls in this range", extra: { grid: { left: 260, right: 40, top: 36, bottom: 30 } } }
    );
    bars(
      "chart-lanes",
      data.lanes.map(function (l) { return l.lane; }),
      [
        { name: "oldest queued (s)", type: "bar", data: data.lanes.map(function (l) { return l.oldest_age_seconds; }) },
        { name: "tasks in queue", type: "bar", data: data.lanes.map(function (l) { return l.tasks; }) },
      ]
    );
    var backlogNames = Object.keys(data.backlogs);
    bars(
      "chart-backlogs",
      backlogNames,
      [{ name: "waiting", type: "bar", data: backlogNames.map(function (n) { return data.backlogs[n]; }) }]
    );
    var quotas = data.accounts.filter(function (a) { return a.daily_quota > 0 && a.used_today !== null; });
    bars(
      "chart-quota",
      quotas.map(function (a) { return a.account; }),
      [{ name: "used today (% of quota)", type: "bar", data: quotas.map(function (a) { return +(100 * a.used_today / a.daily_quota).toFixed(2); }) }],
      { extra: { xAxis: { type: "value", max: 100, axisLabel: { formatter: "{value} %" } } } }
    );

    table("table-states", data.states, [
      function (s) { return s.provider; },
      function (s) { return s.channel; },
      function (s) { return s.segment; },
      function (s) { return s.enabled ? "yes" : "no"; },
      function (s) { return [s.state, "mc-state mc-state-" + s.state.split(" ")[0]]; },
      function (s) { return String(s.attempts); },
      function (s) { return percent(s.success_rate); },
    ]);
    table("table-accounts", data.accounts, [
      function (a) { return a.account + (a.active ? "" : " (disabled)"); },
      function (a) { return a.used_today === null ? "unknown (Redis down)" : String(a.used_today); },
      function (a) { return String(a.daily_quota); },
      function (a) { return String(a.messages); },
      function (a) { return String(a.sent); },
      function (a) { return String(a.delivered); },
      function (a) { return percent(a.delivery_rate); },
      function (a) { return a.cost.toFixed(2); },
    ]);
    document.getElementById("cost-note").textContent =
      "Cost (" + data.currency + "): the providers' prices per segment of the messages sent in the range.";
  }

  function load() {
    var status = document.getElementById("mc-status");
    fetch(root.dataset.url + "?range=" + encodeURIComponent(range), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("data.json answered " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        state.data = data;
        draw(data);
        state.loaded = true;
        state.error = null;
        state.loads += 1;
        status.textContent = "Range " + data.range + " by " + data.grain + "; updated " + new Date(data.generated_at).toLocaleTimeString();
      })
      .catch(function (error) {
        state.error = String(error);
        status.textContent = "Could not load: " + error;
      });
  }

  document.querySelectorAll(".mc-range").forEach(function (button) {
    button.addEventListener("click", function () {
      range = button.dataset.range;
      load();
    });
  });
  window.addEventListener("resize", function () {
    Object.keys(state.charts).forEach(function (id) { state.charts[id].resize(); });
  });
  state.reload = load;
  load();
  setInterval(load, REFRESH_MS);
})();
