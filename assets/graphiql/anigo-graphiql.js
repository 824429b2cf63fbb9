// AniGo's GraphiQL start-up (ours, not vendored). It lives in its own file so
// the page's Content-Security-Policy can say `script-src 'self'` with no
// inline script. The endpoint comes from the page (`data-endpoint`).
(function () {
  'use strict';
  var root = document.getElementById('graphiql');
  var defaultQuery = [
    '# The most popular anime.',
    '# Ctrl-Enter runs the query.',
    '{',
    '  popularAnime(limit: 5) {',
    '    id',
    '    title',
    '  }',
    '}',
    ''
  ].join('\n');
  var fetcher = GraphiQL.createFetcher({ url: root.dataset.endpoint });
  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      defaultEditorToolsVisibility: false
    })
  );
})();
