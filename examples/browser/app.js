// The browser example's page logic, with the autobahn-js browser bundle (global `autobahn`).
//
// Query parameters (all optional): router=ws://HOST:PORT/PATH (default: port 8080 of the page's host, path /ws),
// serializer=json|msgpack (default json), realm (default realm1), steps and delay (the job form's defaults).
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(window.location.search);
  const routerUrl = params.get('router') || `ws://${window.location.hostname || '127.0.0.1'}:8080/ws`;
  const serializerName = params.get('serializer') === 'msgpack' ? 'msgpack' : 'json';
  const realm = params.get('realm') || 'realm1';
  if (params.get('steps')) $('steps').value = params.get('steps');
  if (params.get('delay')) $('delay').value = params.get('delay');
  $('router').value = routerUrl;
  $('serializer').value = serializerName;

  // Reconnecting with other settings reloads the page with them in the query string.
  $('connect-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const next = new URLSearchParams(window.location.search);
    next.set('router', $('router').value);
    next.set('serializer', $('serializer').value);
    window.location.search = next.toString();
  });

  function log(line) {
    const box = $('log');
    box.textContent += `${new Date().toISOString().slice(11, 23)} ${line}\n`;
    box.scrollTop = box.scrollHeight;
  }

  function setState(id, text, kind) {
    const element = $(id);
    element.textContent = text;
    element.className = `state ${kind || ''}`;
  }

  function setPercent(which, percent) {
    $(`${which}-progress`).value = percent;
    $(`${which}-percent`).textContent = `${percent}%`;
  }

  let session = null;
  let running = null; // {job, promise}: the call in progress

  function updateButtons() {
    $('run').disabled = !session || running !== null;
    $('cancel').disabled = running === null;
  }

  // Progress events of every job are published on one topic; this page shows those of its own job.
  function onProgressEvent(args, kwargs) {
    if (!running || !kwargs || kwargs.job !== running.job) return;
    setPercent('event', kwargs.percent);
    setState('event-state', kwargs.state, kwargs.state === 'running' ? '' : kwargs.state);
    if (kwargs.state !== 'running') log(`event: ${kwargs.state} at step ${kwargs.step} of ${kwargs.steps}`);
  }

  function runJob() {
    const job = `job-${Math.random().toString(36).slice(2, 10)}`;
    const steps = Number($('steps').value);
    const delayMs = Number($('delay').value);
    setPercent('call', 0);
    setPercent('event', 0);
    setState('call-state', 'running');
    setState('event-state', 'waiting');
    $('job').textContent = job;
    $('result').textContent = '-';
    log(`calling com.example.job.run (${job}: ${steps} steps of ${delayMs} ms)`);

    // receive_progress: the worker's partial results come to the third function of then() (when.js promises).
    // The call's own promise is the one with cancel().
    const call = session.call('com.example.job.run', [], { job, steps, delay_ms: delayMs }, { receive_progress: true });
    running = { job, call };
    updateButtons();
    call.then(
      (result) => {
        setPercent('call', 100);
        setState('call-state', 'done', 'done');
        $('result').textContent = `sum of squares 1..${result.kwargs.steps} = ${result.kwargs.sum_of_squares}`;
        log(`result: ${JSON.stringify(result.kwargs)}`);
      },
      (error) => {
        if (error && error.error === 'wamp.error.canceled') {
          setState('call-state', 'canceled', 'canceled');
          $('result').textContent = (error.args && error.args[0]) || 'canceled';
        } else {
          const text = error && error.error ? `${error.error} ${JSON.stringify(error.args)}` : String(error);
          setState('call-state', 'failed', 'failed');
          $('result').textContent = text;
        }
        log(`call ended: ${error && error.error ? error.error : error}`);
      },
      (progress) => {
        // Several values (here: kwargs) arrive as an autobahn.Result.
        if (progress && progress.kwargs && progress.kwargs.job === job) setPercent('call', progress.kwargs.percent);
      },
    ).finally(() => {
      running = null;
      updateButtons();
    });
  }

  function cancelJob() {
    if (!running) return;
    log(`canceling ${running.job} (CANCEL, mode kill: the router interrupts the worker and waits for its answer)`);
    running.call.cancel({ mode: 'kill' });
    $('cancel').disabled = true;
  }

  $('run').addEventListener('click', runJob);
  $('cancel').addEventListener('click', cancelJob);

  const serializer =
    serializerName === 'msgpack' ? new autobahn.serializer.MsgpackSerializer() : new autobahn.serializer.JSONSerializer();
  const connection = new autobahn.Connection({
    transports: [{ type: 'websocket', url: routerUrl, serializers: [serializer] }],
    realm,
    max_retries: 5,
  });

  connection.onopen = (newSession) => {
    session = newSession;
    setState('connection-state', 'connected', 'done');
    $('session').textContent = String(session.id);
    $('protocol').textContent = session._socket.info.protocol || '?';
    log(`joined ${realm} at ${routerUrl} as session ${session.id}`);
    session.subscribe('com.example.job.progress', onProgressEvent).then(
      () => {
        log('subscribed to com.example.job.progress');
        updateButtons();
      },
      (error) => log(`subscribe failed: ${error.error || error}`),
    );
  };

  connection.onclose = (reason, details) => {
    session = null;
    running = null;
    updateButtons();
    const retry = details && details.will_retry ? `, retrying in ${Math.round(details.retry_delay)} s` : '';
    setState('connection-state', `disconnected (${reason}${retry})`, 'failed');
    log(`connection closed: ${reason}${retry}`);
  };

  connection.open();
})();
