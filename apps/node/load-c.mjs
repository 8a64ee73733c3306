const mods = process.argv.slice(2);
for (const m of mods) await import(m);
setTimeout(() => { const m = process.memoryUsage(); console.log(mods.join(',').slice(-60), 'rss', Math.round(m.rss/1048576), 'heapTotal', Math.round(m.heapTotal/1048576), 'heapUsed', Math.round(m.heapUsed/1048576), 'ext', Math.round(m.external/1048576), 'ab', Math.round(m.arrayBuffers/1048576)); process.exit(0); }, 500);
