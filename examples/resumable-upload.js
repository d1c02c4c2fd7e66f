// Import the OBS library.
var ObsClient = require('obs-native');

// Create an instance of ObsClient.
var obsClient = new ObsClient({
       access_key_id : '*** Provide your Access Key ***',
       secret_access_key : '*** Provide your Secret Key ***',
       server : 'yourdomainname'
});

obsClient.uploadFile({
       Bucket : 'bucketname',
       Key : 'objectkey',
       // Specify the local file to be uploaded.
       UploadFile : 'localfile',
       // Set the part size to 10 MB.
       PartSize : 10 * 1024 * 1024,
       // Enable the resumable upload mode.
       EnableCheckpoint : true
}, (err, result) => {
        console.error('Error-->' + err);
        console.log('RequestId-->' + result.InterfaceResult.RequestId);
        console.log('Bucket-->' + result.InterfaceResult.Bucket);
        console.log('Key-->' + result.InterfaceResult.Key);
        console.log('Location-->' + result.InterfaceResult.Location);
});
